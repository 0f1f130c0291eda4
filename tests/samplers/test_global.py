"""Global moves: i-SIR, Ex2MCMC and FlEx2MCMC recover known answers, including mixture weights that local
MALA at the same budget gets measurably wrong; the stale-gradient Ex2MCMC of PyPI ex2mcmc 0.0.4 fails the
same test; bad arguments are named."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.mc import (
    assert_gaussian_moments,
    exact_draws,
    gaussian_energy,
    random_gaussian,
    z_threshold,
)
from torch import nn

from latentmcmc import HMC, ISIR, MALA, Ex2MCMC, FlEx2MCMC
from latentmcmc.samplers.ex2mcmc import Ex2MCMCKernel
from latentmcmc.samplers.kernel import SamplerState


def wide_gaussian(d: int, scale: float) -> torch.distributions.Distribution:
    return torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64),
                                                  scale**2 * torch.eye(d, dtype=torch.float64))


@pytest.mark.slow
def test_isir_with_a_proposal_unlike_the_target_recovers_its_moments():
    mean, cov = random_gaussian(2, 10.0, seed=11)
    z0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    chains = ISIR(gaussian_energy(mean, cov), candidates=8, proposal=wide_gaussian(2, 3.0)).run(
        z0, steps=300, warmup=50, thin=3, seed=2)
    assert 0.2 < float(chains.jump_rate.mean()) < 0.9 and torch.equal(chains.jump_rate, chains.acceptance_rate)
    assert chains.evaluations.forward == 1 + 350 * 7 and chains.evaluations.backward == 0
    assert_gaussian_moments(chains.draws, mean, cov)


# ------------------------------------------------------------------ Ex2MCMC and the stale gradient
class StaleGradientKernel(Ex2MCMCKernel):
    """The bug of PyPI ex2mcmc 0.0.4: MALA after an i-SIR jump uses the gradient of the point before the jump."""

    def gradient_after_jump(self, target, jumped, before):
        energy, _ = target.value_and_grad(jumped.z)
        return SamplerState(jumped.z, energy, before.grad, before.frozen)


class StaleGradientEx2MCMC(Ex2MCMC):
    def make_kernel(self):
        return StaleGradientKernel(self.candidates, self.local_steps, self.proposal)


def second_moment_z(cls) -> float:
    """z-score of the mean of |z|^2 over all draws against its value 2 on N(0, I_2), across 1,000 chains."""
    n = 1000
    z0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    chains = cls(lambda z: 0.5 * z.square().sum(1), eps=0.6, candidates=3, local_steps=1).run(z0, steps=60, seed=4)
    per_chain = chains.draws.square().sum(-1).mean(1)
    return float((per_chain.mean() - 2.0) / (per_chain.std() / math.sqrt(n)))


def test_ex2mcmc_keeps_a_gaussian_at_a_large_step_and_the_stale_gradient_version_does_not():
    """Exact: E|z|^2 = 2.  With the pre-jump gradient it measured 2.25 (about 30 standard errors off)."""
    limit = z_threshold(2)
    assert abs(second_moment_z(Ex2MCMC)) < limit
    assert abs(second_moment_z(StaleGradientEx2MCMC)) > limit


@pytest.mark.slow
def test_ex2mcmc_recovers_an_ill_conditioned_gaussian_and_counts_its_passes():
    mean, cov = random_gaussian(3, 30.0, seed=5)
    z0 = exact_draws(mean, cov, 400, seed=6)
    chains = Ex2MCMC(gaussian_energy(mean, cov), eps=0.1, candidates=5, local_steps=2,
                     proposal=wide_gaussian(3, 2.5)).run(z0, steps=200, warmup=100, seed=7)
    assert 0.4 < float(chains.acceptance_rate.mean()) < 0.8  # local MALA steps, adapted to 0.574
    assert chains.evaluations == (1 + 300 * (4 + 3), 1 + 300 * 3)
    assert_gaussian_moments(chains.draws, mean, cov)


# ------------------------------------------------------------------ mode weights: global vs local
WEIGHT, CENTRE, SD = 0.8, 2.5, 0.5


def mixture_energy(z: torch.Tensor) -> torch.Tensor:
    """Two Gaussians at (+-2.5, 0), sd 0.5, weights 0.8 (right) and 0.2 (left)."""
    right = math.log(WEIGHT) - 0.5 * ((z[:, 0] - CENTRE).square() + z[:, 1].square()) / SD**2
    left = math.log(1 - WEIGHT) - 0.5 * ((z[:, 0] + CENTRE).square() + z[:, 1].square()) / SD**2
    return -torch.logaddexp(right, left)


def right_weight_z(chains) -> float:
    """z-score of the share of final states in the right mode against 0.8 (chains are independent)."""
    share = float((chains.last[:, 0] > 0).double().mean())
    n = chains.num_chains
    return (share - WEIGHT) / math.sqrt(WEIGHT * (1 - WEIGHT) / n)


@pytest.fixture(scope="module")
def mixture_start():
    return torch.randn(1000, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)


@pytest.mark.slow
def test_global_kernels_get_the_mode_weights_that_mala_at_the_same_budget_misses(mixture_start):
    limit = z_threshold(3)
    isir = ISIR(mixture_energy, candidates=10, proposal=wide_gaussian(2, 3.0)).run(mixture_start, steps=40, seed=9)
    ex2 = Ex2MCMC(mixture_energy, eps=0.1, candidates=10, local_steps=2, proposal=wide_gaussian(2, 3.0)).run(
        mixture_start, steps=20, warmup=10, seed=9)
    passes = isir.evaluations.passes  # MALA gets as many forward + backward passes per chain
    mala = MALA(mixture_energy, eps=0.1).run(mixture_start, steps=passes // 2 - 60, warmup=60, seed=9)
    assert abs(mala.evaluations.passes - passes) <= 2
    assert abs(right_weight_z(isir)) < limit and abs(right_weight_z(ex2)) < limit
    assert abs(right_weight_z(mala)) > limit  # started half on each side, MALA cannot move the mass


@pytest.mark.slow
def test_flex2mcmc_fits_its_flow_in_warmup_and_gets_the_mode_weights(mixture_start):
    pytest.importorskip("zuko")
    sampler = FlEx2MCMC(mixture_energy, eps=0.1, candidates=10, local_steps=1, flow_lr=1e-2)
    chains = sampler.run(mixture_start, steps=20, warmup=150, seed=10)
    assert abs(right_weight_z(chains)) < z_threshold(1)
    fitted = chains.extra["flow"]  # the run's fitted flow, frozen for the recorded steps
    assert not any(p.requires_grad for p in fitted.parameters())
    assert float(chains.jump_rate.mean()) > 0.3  # the fitted flow proposes where the mass is
    assert sampler.flow is None and sampler.kernel.proposal.module(2) is not fitted  # the sampler is unchanged


# ------------------------------------------------------------------ mechanics
@pytest.mark.parametrize("make", [lambda e: ISIR(e, candidates=4), lambda e: Ex2MCMC(e, eps=0.3, candidates=4),
                                  lambda e: ISIR(e, candidates=4, proposal=wide_gaussian(3, 2.0)),
                                  lambda e: HMC(e, eps=0.2, leapfrog_steps=3)])
def test_same_seed_same_draws_and_independent_chains(make):
    energy = lambda z: 0.5 * z.square().sum(1) + 0.1 * z[:, 0] ** 4  # noqa: E731
    z0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    moved = z0.clone()
    moved[0] += 1.0
    a, b = make(energy).run(z0, steps=20, seed=5), make(energy).run(z0, steps=20, seed=5)
    c = make(energy).run(moved, steps=20, seed=5)
    assert torch.equal(a.draws, b.draws) and not torch.equal(a.draws, make(energy).run(z0, steps=20, seed=6).draws)
    # other chains never see chain 0 (its own draws may coincide once a jump has forgotten the start)
    assert torch.equal(a.draws[1:], c.draws[1:]) and not torch.equal(z0[0], moved[0])


def test_flex2mcmc_same_seed_same_draws():
    pytest.importorskip("zuko")
    z0 = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    runs = [FlEx2MCMC(lambda z: 0.5 * z.square().sum(1), eps=0.3).run(z0, steps=5, warmup=5, seed=3) for _ in range(2)]
    assert torch.equal(runs[0].draws, runs[1].draws)


def test_hmc_counts_divergent_trajectories():
    energy = lambda z: 0.5 * z.square().sum(1) + z[:, 0] ** 4  # noqa: E731  (leapfrog blows up at large eps)
    z0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="divergent"):
        chains = HMC(energy, eps=0.9, leapfrog_steps=10).run(z0, steps=20, seed=2)
    assert int(chains.divergences.sum()) > 0 and bool(torch.isfinite(chains.draws).all())


def test_isir_counts_candidates_with_a_non_finite_energy_as_divergences():
    energy = lambda z: torch.where(z[:, 0] > 1.0, torch.full_like(z[:, 0], float("nan")), 0.5 * z.square().sum(1))  # noqa: E731
    z0 = torch.zeros(200, 2, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="divergent"):
        chains = ISIR(energy, candidates=5).run(z0, steps=10, seed=1)
    assert int(chains.divergences.sum()) > 0 and bool((chains.draws[..., 0] <= 1.0).all())


def test_bad_arguments_are_named():
    e = lambda z: z.square().sum(1)  # noqa: E731
    z0 = torch.randn(4, 2)
    for make, word in [(lambda: ISIR(e, candidates=1), "candidates"), (lambda: Ex2MCMC(e, candidates=0), "candidates"),
                       (lambda: Ex2MCMC(e, local_steps=-1), "local_steps"), (lambda: FlEx2MCMC(e, flow_lr=0), "flow_lr")]:
        with pytest.raises(ValueError, match=word):
            make()
    with pytest.raises(ValueError, match="log_prob"):
        ISIR(e, proposal=object()).run(z0, steps=2)
    with pytest.raises(ValueError, match="event shape"):
        ISIR(e, proposal=torch.distributions.MultivariateNormal(torch.zeros(3), torch.eye(3))).run(z0, steps=2)
    with pytest.raises(ValueError, match=r"Independent"):
        ISIR(e, proposal=torch.distributions.Normal(torch.zeros(2), torch.ones(2))).run(z0, steps=2)
    with pytest.raises(ValueError, match="no step size"):
        ISIR(e).run(z0, steps=2, warmup=2, adapt=True)


class NaNFlow(nn.Module):
    """A 'flow' whose densities are NaN once trained: its fit must stop the run, not record garbage."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(2))

    def forward(self):
        base = torch.distributions.Independent(torch.distributions.Normal(self.shift, torch.ones(2)), 1)
        flow = self

        class Dist:
            def sample(self, shape):
                return base.sample(shape)

            def log_prob(self, z):
                lp = base.log_prob(z)
                return lp * float("nan") if flow.training and torch.is_grad_enabled() else lp

        return Dist()


def test_a_flow_whose_fit_gives_nan_stops_the_run_with_a_clear_error():
    z0 = torch.randn(50, 2)
    with pytest.raises(ValueError, match="non-finite loss .* warm-up step 1; nothing was recorded"):
        FlEx2MCMC(lambda z: 0.5 * z.square().sum(1), flow=NaNFlow()).run(z0, steps=5, warmup=5, seed=0)
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        FlEx2MCMC(lambda z: 0.5 * z.square().sum(1), flow=NaNFlow()).run(z0, steps=5)
