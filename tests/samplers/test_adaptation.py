"""Dual-averaging step-size adaptation, shared and per chain."""

import math

import pytest
import torch
from helpers.mc import across_chain_mean, exact_draws, gaussian_energy, random_gaussian

from latentmcmc import MALA, Langevin

TARGET = 0.574
# Dual averaging converges to eps* with E[accept(eps*)] = target only as warm-up grows; the
# specification for a 1,000-step warm-up is "within 0.05 of the target", plus the measurement's
# own Monte Carlo error (4 standard errors).
SPEC = 0.05


@pytest.mark.slow
def test_shared_eps_lands_near_target():
    mean, cov = random_gaussian(10, 100.0, seed=1)
    z0 = exact_draws(mean, cov, 256, seed=2)
    chains = MALA(gaussian_energy(mean, cov), eps=1.0).run(z0, steps=1000, warmup=1000, seed=3)
    assert torch.unique(chains.eps).numel() == 1  # one shared step size
    acc, se = across_chain_mean(chains.acceptance_rate)
    assert abs(float(acc) - TARGET) < SPEC + 4 * float(se), float(acc)


def scaled_energy(scales):
    """Chain i targets N(0, s_i^2 I): only per-chain step sizes can suit every chain."""

    def energy(z):
        return 0.5 * z.square().sum(1) / scales.square()

    return energy


@pytest.mark.slow
def test_per_chain_eps_adapts_each_chain():
    n = 64
    scales = torch.logspace(-1, 1, n, dtype=torch.float64)  # variances over four decades
    z0 = torch.randn(n, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * scales[:, None]
    eps0 = torch.full((n,), 0.1, dtype=torch.float64)
    chains = MALA(scaled_energy(scales), eps=eps0).run(z0, steps=2000, warmup=1000, seed=5)
    # each chain's acceptance: 2,000 steps give a standard error below 0.02 at this acceptance
    dev = (chains.acceptance_rate - TARGET).abs()
    assert float(dev.max()) < SPEC + 4 * 0.02, chains.acceptance_rate
    # the adapted step sizes follow the chains' scales (optimal eps is proportional to s^2)
    slope = torch.linalg.lstsq(
        torch.stack([torch.ones(n), scales.log()], 1).double(), chains.eps.log()[:, None]
    ).solution[1]
    assert abs(float(slope) - 2.0) < 0.2, float(slope)


@pytest.mark.slow
def test_shared_eps_cannot_suit_chains_of_different_scales():
    """Negative control for the test above: one shared eps leaves acceptances far apart."""
    n = 64
    scales = torch.logspace(-1, 1, n, dtype=torch.float64)
    z0 = torch.randn(n, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * scales[:, None]
    with pytest.warns(RuntimeWarning, match="divergent"):  # the shared eps is far too big for the narrowest chains
        chains = MALA(scaled_energy(scales), eps=0.1).run(z0, steps=500, warmup=1000, seed=5)
    assert float(chains.acceptance_rate.max() - chains.acceptance_rate.min()) > 0.5


@pytest.mark.slow
def test_langevin_adapts_to_the_acceptance_mala_would_have():
    mean, cov = random_gaussian(10, 100.0, seed=1)
    z0 = exact_draws(mean, cov, 256, seed=2)
    chains = Langevin(gaussian_energy(mean, cov), eps=1.0).run(z0, steps=1000, warmup=1000, target_accept=0.9, seed=3)
    assert torch.all(chains.accept_prob == 1.0)
    acc, se = across_chain_mean(chains.mh_accept_rate)
    assert abs(float(acc) - 0.9) < SPEC + 4 * float(se), float(acc)
    assert math.isfinite(float(chains.eps[0]))


def test_no_adaptation_keeps_eps():
    chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.3).run(torch.randn(8, 2), steps=10, warmup=10, adapt=False)
    assert torch.all(chains.eps == 0.3)


@pytest.mark.parametrize("shared", [True, False])
def test_dual_averaging_is_pyros_bit_for_bit(shared):
    """Our pure dual-averaging step (also run inside fused blocks) reproduces Pyro's DualAveraging exactly."""
    pyro_da = pytest.importorskip("pyro.ops.dual_averaging")
    from latentmcmc.samplers.adaptation import StepSizeAdapter, acceptance_statistic

    eps = torch.full((6,), 0.05)
    ours = StepSizeAdapter(eps, TARGET, shared)
    theirs = pyro_da.DualAveraging(prox_center=torch.log(10.0 * (eps[:1] if shared else eps)), t0=10, kappa=0.75,
                                   gamma=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        accept, live = torch.rand(6, generator=g), torch.rand(6, generator=g) > 0.2
        ours.update(accept, live)
        theirs.step(TARGET - acceptance_statistic(accept, live, shared))
        x_t, x_avg = theirs.get_state()
        assert torch.equal(ours.state.x_t, x_t) and torch.equal(ours.state.x_avg, x_avg)
