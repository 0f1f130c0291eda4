"""HMC: means and covariances of an ill-conditioned Gaussian with a fixed trajectory and with ChEES; the
leapfrog is reversible; the cost is counted per leapfrog step; bad arguments are named."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.mc import (
    assert_gaussian_moments,
    exact_draws,
    gaussian_energy,
    random_gaussian,
)

from latentmcmc import HMC, MALA
from latentmcmc.energy import as_target
from latentmcmc.samplers.hmc import HMCNoise, HMCParams, LeapfrogProposer, halton
from latentmcmc.samplers.kernel import KernelParams, gradient_state

D, COND = 10, 100.0


@pytest.fixture(scope="module")
def target():
    mean, cov = random_gaussian(D, COND, seed=1)
    return mean, cov, gaussian_energy(mean, cov)


@pytest.mark.slow
def test_hmc_keeps_an_ill_conditioned_gaussian(target):
    mean, cov, energy = target
    chains = HMC(energy, eps=0.05, leapfrog_steps=8).run(exact_draws(mean, cov, 300, seed=2), steps=300, warmup=150,
                                                         thin=2, seed=3)
    assert 0.5 < float(chains.acceptance_rate.mean()) < 0.95  # adapted towards 0.65
    assert chains.evaluations == (1 + 450 * 8, 1 + 450 * 8)
    assert_gaussian_moments(chains.draws, mean, cov)


@pytest.mark.slow
def test_chees_adapts_the_trajectory_and_keeps_the_target(target):
    mean, cov, energy = target
    z0 = torch.randn(300, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sampler = HMC(energy, eps=0.05, leapfrog_steps=2, chees=True)
    chains = sampler.run(z0, steps=300, warmup=300, thin=2, seed=5)
    length = chains.extra["trajectory_length"]
    sd = torch.linalg.eigvalsh(cov).sqrt()
    # ChEES lengthens a far too short start (2 steps of 0.05) to the scale of the widest direction
    assert float(sd.min()) < length < 4 * float(sd.max()), length
    assert_gaussian_moments(chains.draws, mean, cov)


def test_leapfrog_is_reversible_and_one_step_is_mala():
    """Flipping the final momentum and integrating back returns to the start; with one step of size h the
    proposal is MALA's with eps = h^2 (same point, same log ratio)."""
    energy = lambda z: 0.5 * z.square().sum(1) + 0.1 * z[:, 0] ** 4  # noqa: E731
    target = as_target(energy)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = torch.full((5,), 0.1, dtype=torch.float64)
    leap = LeapfrogProposer(7)
    there = leap.propose(target, gradient_state(target, z), HMCParams(eps), HMCNoise(p, 7))
    back = leap.propose(target, gradient_state(target, there.z), HMCParams(eps), HMCNoise(-there.aux[1], 7))
    torch.testing.assert_close(back.z, z)
    torch.testing.assert_close(back.log_accept_ratio, -there.log_accept_ratio)
    one = leap.propose(target, gradient_state(target, z), HMCParams(eps), HMCNoise(p, 1))
    mala = MALA(energy).kernel.proposer.propose(target, gradient_state(target, z), KernelParams(eps.square()), p)
    torch.testing.assert_close(one.z, mala.z)
    torch.testing.assert_close(one.log_accept_ratio, mala.log_accept_ratio)


def test_halton_sequence():
    assert [halton(k) for k in range(1, 6)] == [0.5, 0.25, 0.75, 0.125, 0.625]


def test_bad_arguments_are_named():
    e = lambda z: z.square().sum(1)  # noqa: E731
    for kwargs, word in [(dict(leapfrog_steps=0), "leapfrog_steps"), (dict(max_leapfrog_steps=0), "max_leapfrog_steps"),
                         (dict(eps=torch.full((4,), 0.1), chees=True), "scalar eps")]:
        with pytest.raises(ValueError, match=word):
            HMC(e, **kwargs)
    assert math.isclose(HMC(e).default_target_accept, 0.65)
