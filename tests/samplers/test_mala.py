"""MALA and Langevin against Gaussian targets with known moments."""

import math

import pytest
import torch
from helpers.mc import (
    assert_gaussian_moments,
    exact_draws,
    gaussian_energy,
    random_gaussian,
    z_scores,
    z_threshold,
)

from latentmcmc import MALA, Langevin

D, COND = 10, 100.0


@pytest.fixture(scope="module")
def target():
    mean, cov = random_gaussian(D, COND, seed=1)
    return mean, cov, gaussian_energy(mean, cov)


@pytest.mark.slow
def test_mala_keeps_ill_conditioned_gaussian_invariant(target):
    """Started at exact draws, MALA's mean and second moments stay on the truth within MC error."""
    mean, cov, energy = target
    z0 = exact_draws(mean, cov, 400, seed=2)
    chains = MALA(energy, eps=0.05).run(z0, steps=1500, warmup=300, thin=5, seed=3)
    assert 0.3 < float(chains.acceptance_rate.mean()) < 0.9
    assert_gaussian_moments(chains.draws, mean, cov)


@pytest.mark.slow
def test_mala_converges_from_the_prior(target):
    """Started far from the target (N(0, I)), MALA forgets its start within the warm-up."""
    mean, cov, energy = target
    z0 = torch.randn(400, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3.0
    chains = MALA(energy, eps=0.05).run(z0, steps=1500, warmup=1500, thin=5, seed=5)
    assert_gaussian_moments(chains.draws, mean, cov)


@pytest.mark.slow
def test_moment_check_detects_langevin_bias(target):
    """The same check fails for unadjusted Langevin at a large step: the test has power."""
    mean, cov, energy = target
    z0 = exact_draws(mean, cov, 400, seed=2)
    # eps = 2 * sigma_min^2: ULA doubles the variance along the narrowest direction (0.1 -> 0.2)
    chains = Langevin(energy, eps=0.2).run(z0, steps=1500, warmup=300, adapt=False, thin=5, seed=3)
    z = z_scores(chains.draws, mean, cov)
    assert float(z.abs().max()) > z_threshold(z.numel())


@pytest.mark.parametrize("s2,eps", [(1.0, 1.0), (2.0, 0.5)])
def test_langevin_bias_pins_the_eps_convention(s2, eps):
    """For N(0, s^2), ULA's stationary variance is s^2 / (1 - eps / (4 s^2)); MALA's is s^2.

    20,000 independent chains started at exact draws; the last state of each is an iid draw, so the
    variance estimate has standard error ``v * sqrt(2 / (n - 1))``.
    """
    n = 20000
    energy = lambda z: 0.5 * z.square().sum(1) / s2  # noqa: E731
    z0 = torch.randn(n, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * math.sqrt(s2)
    ula = Langevin(energy, eps=eps).run(z0, steps=60, seed=7, record="last")
    mala = MALA(energy, eps=eps).run(z0, steps=60, seed=7, record="last")
    v_ula = float(ula.last.var())
    v_mala = float(mala.last.var())
    expected_ula = s2 / (1.0 - eps / (4.0 * s2))
    zc = z_threshold(3)
    assert abs(v_ula - expected_ula) < zc * expected_ula * math.sqrt(2 / (n - 1))
    assert abs(v_mala - s2) < zc * s2 * math.sqrt(2 / (n - 1))
    assert abs(v_ula - s2) > zc * expected_ula * math.sqrt(2 / (n - 1))  # the bias is resolved


@pytest.mark.slow
def test_acceptance_tends_to_one_as_eps_shrinks(target):
    mean, cov, energy = target
    z0 = exact_draws(mean, cov, 500, seed=8)
    rates = []
    for eps in (0.3, 0.1, 0.03, 0.01, 0.001, 0.0001):
        chains = MALA(energy, eps=eps).run(z0, steps=100, seed=9, record="last")
        rates.append(float(chains.acceptance_rate.mean()))
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
    assert rates[-1] > 0.999, rates
    # MALA's rejection rate vanishes like eps^(3/2): measured slope between the two smallest eps
    slope = math.log((1 - rates[-2]) / (1 - rates[-1])) / math.log(10.0)
    assert 1.2 < slope < 1.8, slope


@pytest.mark.slow
def test_float32_runs_and_matches(target):
    mean, cov, energy = target
    z0 = exact_draws(mean, cov, 300, seed=10).float()
    chains = MALA(gaussian_energy(mean.float(), cov.float()), eps=0.05).run(z0, steps=800, thin=4, seed=11)
    assert chains.draws.dtype == torch.float32 and chains.eps.dtype == torch.float32
    assert_gaussian_moments(chains.draws, mean, cov)
