"""CUDA paths (skipped without a GPU): streaming draws to pinned host memory, compiled energy with CUDA graphs."""

import pytest
import torch
from helpers.models import moves, small_latent_energy

from latentmcmc import MALA

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ENERGY = lambda z: 0.5 * z.square().sum(1) + 0.1 * z[:, 0] ** 4  # noqa: E731


def test_streamed_draws_are_pinned_host_copies_of_the_device_run():
    z0 = torch.randn(256, 3, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    direct = MALA(ENERGY, eps=0.2).run(z0, steps=50, warmup=20, seed=1)
    streamed = MALA(ENERGY, eps=0.2).run(z0, steps=50, warmup=20, seed=1, stream=7)
    assert streamed.draws.device.type == "cpu" and streamed.draws.is_pinned()
    assert direct.draws.device.type == "cuda"
    assert torch.equal(streamed.draws, direct.draws.cpu())
    assert torch.equal(streamed.energy, direct.energy.cpu())


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_energy_on_cuda_gives_the_eager_draws(mode):
    energy = small_latent_energy()
    energy.generator.cuda(), energy.critic.cuda()
    z0 = torch.randn(64, 4, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    eager = MALA(energy, eps=0.3).run(z0, steps=40, warmup=20, seed=5)
    compiled = MALA(energy, eps=0.3, compile=mode).run(z0, steps=40, warmup=20, seed=5)
    assert torch.equal(moves(compiled), moves(eager))
    torch.testing.assert_close(compiled.draws, eager.draws, rtol=0, atol=1e-4)


def test_the_step_loop_does_not_synchronise_with_the_host():
    """The driver's eager step path (one :func:`run_steps` step with dual averaging, as ``Run.advance``
    calls it), its recording (streamed to host too) and the adapter's state queue work only: CUDA's sync
    debug mode turns any device-to-host synchronisation into an error."""
    from latentmcmc.samplers.adaptation import StepSizeAdapter
    from latentmcmc.samplers.block import Adaptation, run_steps
    from latentmcmc.samplers.recording import PhaseRecorder

    sampler = MALA(ENERGY, eps=0.2)
    kernel = sampler.kernel
    state = sampler.init(torch.randn(128, 3, device="cuda"))
    params = kernel.init_params(sampler._eps_vector(state.z), state.z)
    rng = torch.Generator("cuda").manual_seed(0)
    adapter = StepSizeAdapter(params.eps, 0.574, shared=True)
    recorders = [PhaseRecorder(state, 10, 1, store=True, store_eps=True),
                 PhaseRecorder(state, 10, 1, store=True, store_eps=True, stream=4)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(10):
            noise = kernel.draw_noise(state, rng, params)
            out = run_steps(kernel, sampler.target, state, params, [noise], freeze=False, keep_states=True,
                            adaptation=Adaptation.of(adapter))
            for recorder in recorders:
                recorder.record_block(i, out)
            state, params, adapter.state = out.state, out.params, out.adaptation
    finally:
        torch.cuda.set_sync_debug_mode(0)
    recorders[1].flush()
    assert recorders[0].count == 10 and torch.equal(recorders[1].draws, recorders[0].draws.cpu())
    assert not torch.equal(recorders[0].eps[:, 0], recorders[0].eps[:, -1])  # eps was adapted


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_fused_blocks_on_cuda_equal_the_eager_run(mode):
    """Fused blocks (a CUDA graph per block with reduce-overhead) give the eager states to rounding."""
    energy = small_latent_energy()
    energy.generator.cuda(), energy.critic.cuda()
    z0 = torch.randn(256, 4, device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    sampler = MALA(energy, eps=0.3, compile=mode)
    eager = sampler.run(z0, steps=40, warmup=20, seed=5, fuse=False)
    fused = sampler.run(z0, steps=40, warmup=20, seed=5, fuse=10)
    assert fused.extra["fused_steps"] == 60
    torch.testing.assert_close(fused.draws, eager.draws, rtol=0, atol=1e-3)
    torch.testing.assert_close(fused.eps, eager.eps, rtol=1e-4, atol=0)


def test_a_fused_block_does_not_synchronise_with_the_host():
    energy = small_latent_energy()
    energy.generator.cuda(), energy.critic.cuda()
    sampler = MALA(energy, eps=0.3)
    z0 = torch.randn(128, 4, device="cuda")
    sampler.run(z0, steps=20, warmup=10, seed=1, fuse=10)  # compiles
    block = sampler.fused_block()
    state = sampler.init(z0)
    rng = torch.Generator("cuda").manual_seed(0)
    params = sampler.kernel.init_params(sampler._eps_vector(z0), z0)
    noises = [sampler.kernel.draw_noise(state, rng, params) for _ in range(10)]
    block(state, params, noises, freeze=False, keep_states=False)  # compiles this variant (compiling reads values)
    torch.cuda.set_sync_debug_mode("error")
    try:
        block(state, params, noises, freeze=False, keep_states=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
