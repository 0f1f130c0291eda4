"""Latent priors other than N(0, I): names, the map to the unconstrained space, AIS against the grid, refine and files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.conformance import prior_log_z, small_latent_energy
from torch import nn
from torch.distributions import Normal, StudentT, Uniform

from latentmcmc import LatentEnergy
from latentmcmc.priors import (
    PRIORS,
    LatentPrior,
    TruncatedStandardNormal,
    as_prior,
    parse_prior,
)
from latentmcmc.refinement import RefineOptions, refine
from latentmcmc.samplers import SamplerOptions, make_sampler


@pytest.mark.parametrize("text,name", [("normal", "normal"), ("uniform:-1.0,1", "uniform:-1,1"),
                                       ("student-t:5", "student-t:5"), ("truncated-normal:0.7", "truncated-normal:0.7")])
def test_every_named_prior_parses_to_one_spelling(text, name):
    assert parse_prior(text).name == name
    assert set(PRIORS) == {"normal", "uniform", "student-t", "truncated-normal"}


@pytest.mark.parametrize("text,message", [
    ("gamma:2", "must be none or one of normal, uniform:LO,HI"), ("uniform:1", "uniform:LO,HI"),
    ("uniform:1,-1", "LO < HI"), ("student-t:0", "DF > 0"), ("student-t:x", "student-t:DF"),
    ("truncated-normal:-1", "PSI > 0"), ("uniform:0,inf", "finite")])
def test_a_bad_prior_name_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        RefineOptions(prior=text)


def test_python_values_of_prior_and_their_meaning():
    assert RefineOptions(prior="normal").prior is True and RefineOptions(prior="none").prior is False
    assert as_prior(True).standard and as_prior(False) is None
    with pytest.raises(ValueError, match="discrete"):
        LatentPrior(torch.distributions.Bernoulli(0.5))
    with pytest.raises(ValueError, match="shape"):
        LatentEnergy(nn.Identity(), nn.Linear(2, 1), prior=Uniform(-torch.ones(3), torch.ones(3)), latent_shape=(2,))


def test_the_prior_energy_is_the_density_of_the_pushed_prior():
    """exp(-E_0(u)) integrates to one over u and E_0's gradient is autograd's, for each named prior."""
    u = torch.linspace(-40, 40, 160001, dtype=torch.float64).reshape(-1, 1)
    for text in ("uniform:-2,3", "student-t:3", "truncated-normal:1.5"):
        prior = parse_prior(text)
        energy = prior.energy(u)
        assert math.isclose(float(torch.exp(-energy).sum() * (u[1, 0] - u[0, 0])), 1.0, rel_tol=1e-3), text
        value, grad = prior.value_and_grad(u[::1000])
        v = u[::1000].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(prior.energy(v).sum(), v)
        torch.testing.assert_close(grad, expected)
        inner = u[(u.abs() < 10).squeeze(1)][::1000]  # beyond, a sigmoid's output rounds to the support's edge
        torch.testing.assert_close(prior.from_latent(prior.to_latent(inner)), inner, atol=1e-6, rtol=1e-6)


def test_draws_follow_the_prior_and_edges_stay_finite():
    g = torch.Generator().manual_seed(0)
    prior = parse_prior("truncated-normal:1")
    z = prior.to_latent(prior.sample(20000, (3,), g))
    assert float(z.abs().max()) <= 1.0
    truth = TruncatedStandardNormal(1.0)
    var = 1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi) / float(truth._mass)  # variance of N(0,1) on [-1, 1]
    assert abs(float(z.var()) - var) < 4 * var * math.sqrt(2 / z.numel())
    edge = parse_prior("uniform:-1,1").from_latent(torch.tensor([[-1.0, 1.0]]))
    assert bool(torch.isfinite(edge).all())


def test_ais_estimates_log_z_relative_to_a_uniform_prior():
    """AnnealedMALA's AIS estimate of log Z (relative to the prior) matches the grid within 4 standard errors.

    The annealing path starts from the prior's own energy in u: with the N(0, I) energy in its place
    the estimate misses by far more (checked when this test was written).
    """
    energy = small_latent_energy(prior="uniform:-1,1")
    z0 = energy.latent_prior.sample(2000, (2,), torch.Generator().manual_seed(3), torch.float64)
    chains = make_sampler("annealed-mala", energy, SamplerOptions(eps=0.1)).run(z0, steps=1, warmup=100, seed=4,
                                                                             progress=False)
    est = chains.log_normalizer()
    assert est.reliable
    truth = prior_log_z("uniform:-1,1")
    assert abs(est.estimate - truth) < 4 * est.stderr + 1e-3, (est, truth)


def test_refine_reports_latents_in_the_prior_space():
    torch.manual_seed(0)
    g, c = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(2, 1))
    result = refine(g, c, (2,), num_chains=64, steps=10, warmup=10, prior="uniform:-1,1", progress=False)
    for t in (result.z0, result.z, result.chains.draws):
        assert float(t.abs().max()) < 1.0
    with torch.no_grad():
        torch.testing.assert_close(result.after, g(result.z), atol=1e-5, rtol=1e-5)
    assert result.metrics["prior"] == "uniform:-1,1"


def test_the_standard_normal_is_the_default_bit_for_bit():
    """prior=True, prior="normal" and no prior argument give one run (the default path is unchanged)."""
    torch.manual_seed(0)
    g, c = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(2, 1))
    runs = [refine(g, c, (2,), num_chains=16, steps=5, warmup=5, progress=False, **kw)
            for kw in ({}, {"prior": True}, {"prior": "normal"})]
    for r in runs[1:]:
        assert torch.equal(r.z, runs[0].z) and torch.equal(r.chains.draws, runs[0].chains.draws)


def test_truncation_is_refused_where_it_means_nothing():
    assert parse_prior("student-t:4").truncates and parse_prior("truncated-normal:2").truncates
    assert not parse_prior("uniform:0,1").truncates and parse_prior("uniform:-1,1").truncates
    assert LatentPrior(Normal(0.0, 1.0)).truncates and not LatentPrior(Normal(1.0, 1.0)).truncates
    assert LatentPrior(StudentT(3.0)).truncates
    with pytest.raises(ValueError, match="truncation"):
        parse_prior("uniform:0,2").truncate(torch.zeros(2, 2), 0.7)


def test_prior_draws_repeat_for_a_seed():
    prior = parse_prior("student-t:3")
    a = prior.sample(5, (2,), torch.Generator().manual_seed(1))
    b = prior.sample(5, (2,), torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    prior.sample(5, (2,), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    assert np.isfinite(a.numpy()).all()


@pytest.mark.slow
def test_fit_critic_draws_the_generator_s_latents_from_its_prior():
    """The generated side of a critic fit comes from the generator's prior (here the identity on uniform(-1, 1)
    latents: every generated sample lies in the box), and fit.json names the prior."""
    from latentmcmc.fit_critic import _generated, fit_critic

    rng = torch.Generator().manual_seed(0)
    x = _generated(nn.Identity(), (2,), 4000, rng, "cpu", (2,), parse_prior("uniform:-1,1"))
    assert float(x.abs().max()) < 1 and float(x.abs().mean()) > 0.45  # uniform(-1, 1): E|x| = 1/2
    real = torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    report = fit_critic(nn.Identity(), real, (2,), prior="uniform:-1,1", steps=2, eval_every=1, width=8,
                        progress=False).report
    assert report["prior"] == "uniform:-1,1"
