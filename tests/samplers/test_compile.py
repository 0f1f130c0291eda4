"""The opt-in compiled energy (torch.compile): same noise, same accept decisions, same draws to rounding."""

import pytest
import torch
from helpers.models import moves, small_latent_energy
from torch._dynamo.utils import counters

from latentmcmc import MALA
from latentmcmc.energy import Target

# torch.compile's own imports use torch.jit.script_method, which torch 2.13 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")


@pytest.mark.slow
def test_compiled_energy_gives_the_eager_draws():
    energy = small_latent_energy()
    z0 = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    eager = MALA(energy, eps=0.3).run(z0, steps=40, warmup=20, seed=5)
    graphs_before = counters["stats"]["unique_graphs"]
    compiled = MALA(energy, eps=0.3, compile=True).run(z0, steps=40, warmup=20, seed=5)
    assert counters["stats"]["unique_graphs"] > graphs_before, "nothing was compiled"
    assert 0.2 < float(eager.acceptance_rate.mean()) < 0.95  # both accept and reject decisions occur
    assert torch.equal(moves(compiled), moves(eager))  # the same accept decisions
    # float32 rounding of fused kernels, accumulated over 60 steps; a different noise draw or a
    # flipped decision moves a state by O(sqrt(eps)) ~ 0.5
    torch.testing.assert_close(compiled.draws, eager.draws, rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled.eps, eager.eps, rtol=1e-4, atol=0)


@pytest.mark.slow  # compiles
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # on CPU the second runs the graph-copy path
def test_a_target_with_its_own_value_and_grad_has_that_compiled(mode):
    def value_and_grad(z):
        return 0.5 * z.square().sum(1) + 0.25 * z[:, 0] ** 4, z + torch.nn.functional.pad(z[:, :1] ** 3, (0, 1))

    target = Target(lambda z: value_and_grad(z)[0], value_and_grad)
    z0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    eager = MALA(target, eps=0.4).run(z0, steps=30, seed=3)
    compiled = MALA(target, eps=0.4, compile=mode).run(z0, steps=30, seed=3)
    assert torch.equal(moves(compiled), moves(eager))
    torch.testing.assert_close(compiled.draws, eager.draws, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["fast", 1])
def test_unknown_compile_mode_is_an_error(mode):
    with pytest.raises(ValueError, match="compile"):
        MALA(lambda z: z.square().sum(1), eps=0.1, compile=mode)
