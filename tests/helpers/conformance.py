"""The conformance checks every entry of the ``SAMPLERS`` table goes through (``tests/samplers/test_conformance.py``).

A kernel is tested by being in the table: exactness on a Gaussian and on a 2-D mixture against grid
truth (thresholds from the Monte Carlo error), same-seed and repeated-run determinism, eager = fused
to rounding, a block alone = the block in a loop, resume after a checkpoint bit for bit, model-pass
accounting, and bad options raising a ValueError that names the option.  The checks are functions of
the sampler's name, so a kernel added to the table in a test (``tests/test_package.py``) runs them too.

Unadjusted kernels (``calibrated`` False) do not sample ``exp(-E)``: on the Gaussian they are held to
their own stationary law at the step size they ran with (for ULA on ``N(m, P^-1)``,
``N(m, (P (I - eps P / 4))^-1)``), and the mixture test, which checks exactness, skips them.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from latentmcmc import LatentEnergy
from latentmcmc.exact import grid_target
from latentmcmc.refinement import RefineOptions, run_blocks
from latentmcmc.samplers import SAMPLERS, SamplerOptions, make_sampler
from latentmcmc.samplers.registry import declared_options

from .mc import (
    across_chain_mean,
    assert_gaussian_moments,
    exact_draws,
    gaussian_energy,
    random_gaussian,
    z_threshold,
)

D = 3
MEAN, COV = random_gaussian(D, 4.0, seed=11)
GAUSS = gaussian_energy(MEAN, COV)
OPTIONS = SamplerOptions(eps=0.1, candidates=8, local_steps=2, leapfrog_steps=4)
BAD_VALUES = (-1, 0, "nonsense", float("nan"), object())


def sampler(name: str, energy, options: SamplerOptions = OPTIONS):
    if name == "flex2mcmc":
        pytest.importorskip("zuko")
    return make_sampler(name, energy, options)


# ---------------------------------------------------------------------- exactness
def ula_covariance(cov: torch.Tensor, eps: float) -> torch.Tensor:
    """The stationary covariance of unadjusted Langevin with step ``eps`` on ``N(m, cov)``: ``(P (I - eps P / 4))^-1``."""
    precision = torch.linalg.inv(cov)
    return torch.linalg.inv(precision @ (torch.eye(cov.shape[0], dtype=cov.dtype) - eps * precision / 4))


def check_gaussian(name: str) -> None:
    s = sampler(name, GAUSS)
    z0 = exact_draws(MEAN, COV, 256, seed=12)
    chains = s.run(z0, steps=150, warmup=150, seed=13, progress=False)
    cov = COV
    if not s.kernel.calibrated:  # held to its own stationary law at the eps it ran with (one shared eps)
        cov = ula_covariance(COV, float(chains.eps[0]))
    assert_gaussian_moments(chains.draws, MEAN, cov)


def mixture_energy(z: torch.Tensor) -> torch.Tensor:
    """``-log`` of a 2-D mixture: weights 0.35 / 0.65 at (-0.8, 0) and (0.8, 0.4), sd 0.6 (overlapping modes)."""
    centres = torch.tensor([[-0.8, 0.0], [0.8, 0.4]], dtype=z.dtype)
    log_w = torch.log(torch.tensor([0.35, 0.65], dtype=z.dtype))
    sq = (z[:, None, :] - centres).square().sum(-1) / (2 * 0.36)
    return -torch.logsumexp(log_w - sq, 1)


def mixture_draws(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.8, 0.0], [0.8, 0.4]], dtype=torch.float64)
    which = (torch.rand(n, generator=g, dtype=torch.float64) < 0.65).long()
    return centres[which] + 0.6 * torch.randn(n, 2, generator=g, dtype=torch.float64)


REGIONS = (lambda z: z[..., 0] > 0, lambda z: z[..., 1] > 0.2, lambda z: z[..., 0] > 0.8)


@functools.lru_cache(maxsize=1)
def mixture_truth() -> torch.Tensor:
    """Region probabilities by the midpoint rule on cells of width 0.02 whose edges fall on the regions' edges
    (cell centres at 0.01 + 0.02 k), so the rule's error is O(width^2), far below the Monte Carlo error."""
    grid = grid_target(lambda z: mixture_energy(z.double()), half_width=5.99, points_per_axis=600)
    return torch.stack([grid.expectation(region(grid.points.double()).double()) for region in REGIONS])


def check_mixture(name: str) -> None:
    truth = mixture_truth()
    s = sampler(name, mixture_energy)
    if not s.kernel.calibrated:
        pytest.skip(f"{name} is not exact (unadjusted): the Gaussian test holds it to its own stationary law")
    z0 = mixture_draws(400, seed=14)  # stationary from the start, for the kernels that keep z0's law
    chains = s.run(z0, steps=200, warmup=100, seed=15, progress=False)
    per_chain = torch.stack([region(chains.draws).double().mean(1) for region in REGIONS], 1)  # (chains, regions)
    estimate, se = across_chain_mean(per_chain)
    z = (estimate - truth) / se
    assert float(z.abs().max()) < z_threshold(len(REGIONS)), (z, estimate, truth)


# ---------------------------------------------------------------------- determinism and blocks
def small_latent_energy(dtype: torch.dtype = torch.float64, prior=True) -> LatentEnergy:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).to(dtype)
    critic = nn.Sequential(nn.Linear(2, 16), nn.Softplus(), nn.Linear(16, 1)).to(dtype)
    return LatentEnergy(generator, critic, beta=2.0, prior=prior)


FIELDS = ("draws", "energy", "accept_prob", "diverging", "eps", "last", "acceptance_rate", "divergences",
          "warmup_draws", "warmup_eps", "log_weights", "jump_rate", "mh_accept_rate")


def assert_same_chains(a, b) -> None:
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=field)
    assert a.evaluations == b.evaluations


def check_determinism(name: str) -> None:
    z0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = sampler(name, small_latent_energy())
    kwargs = dict(steps=8, warmup=6, seed=3, keep_warmup=True, progress=False)
    first = s.run(z0, **kwargs)
    again = s.run(z0, **kwargs)  # the same sampler: a run must not change it
    fresh = sampler(name, small_latent_energy()).run(z0, **kwargs)
    assert_same_chains(first, again)
    assert_same_chains(first, fresh)
    other = s.run(z0, **{**kwargs, "seed": 4})
    assert not torch.equal(other.draws, first.draws)


def check_one_chain(name: str) -> None:
    """A run of one chain works (its step size is a (1,) view with stride 0: the resume fingerprint once failed on it)."""
    chains = sampler(name, small_latent_energy()).run(torch.zeros(1, 2, dtype=torch.float64), steps=3, warmup=2, seed=0,
                                                     progress=False)
    assert chains.draws.shape[:2] == (1, 3)


def check_block_alone_equals_block_in_a_loop(name: str) -> None:
    if name == "flex2mcmc":
        pytest.importorskip("zuko")
    energy = small_latent_energy(torch.float32)  # refinement draws its starting points in float32
    options = RefineOptions(num_chains=12, block_size=4, sampler=name, steps=5, warmup=5, seed=2, progress=False,
                            sampler_options=OPTIONS)
    loop, _ = run_blocks(energy, (2,), options)
    alone, _ = run_blocks(energy, (2,), options, indices=[2])  # what rank 2 of a torchrun job runs
    assert torch.equal(loop[2].z, alone[0].z) and torch.equal(loop[2].chains.draws, alone[0].chains.draws)
    torch.testing.assert_close(loop[2].eps, alone[0].eps, rtol=0, atol=0, equal_nan=True)


# ---------------------------------------------------------------------- resume
def check_resume(name: str) -> None:
    z0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kwargs = dict(steps=10, warmup=10, seed=5, keep_warmup=True, progress=False, checkpoint_every=4)
    saved: list[dict] = []
    whole = sampler(name, small_latent_energy()).run(z0, checkpoint=saved.append, **kwargs)
    assert len(saved) == 4  # steps 4 and 8 (warm-up), 12 and 16 (sampling)
    for payload in (saved[1], saved[3]):
        resumed = sampler(name, small_latent_energy()).run(z0, checkpoint=lambda p: None, resume=payload, **kwargs)
        assert_same_chains(whole, resumed)


# ---------------------------------------------------------------------- eager = fused
def check_fused(name: str, prior=True) -> None:
    s = sampler(name, small_latent_energy(prior=prior), OPTIONS.replace(leapfrog_steps=2))  # short graphs compile sooner
    if not getattr(s.kernel, "fusable", False):
        pytest.skip(f"{name}'s kernel does not fuse (its steps run one at a time)")
    z0 = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    kwargs = dict(steps=12, warmup=8, seed=6, keep_warmup=True, thin=2, progress=False)
    eager, fused = s.run(z0, fuse=False, **kwargs), s.run(z0, fuse=2, **kwargs)
    assert eager.extra["fused_steps"] == 0
    if fused.extra["fused_steps"] == 0:  # e.g. an unadjusted kernel carrying AIS weights: every step runs alone
        assert_same_chains(eager, fused)
        pytest.skip(f"the driver fuses none of {name}'s steps (see Run._fusable_steps)")
    # the same noise and decisions; states to rounding (float64: no decision sits within rounding of its boundary)
    assert torch.equal(fused.draws != fused.draws.roll(1, 1), eager.draws != eager.draws.roll(1, 1))
    torch.testing.assert_close(fused.draws, eager.draws, rtol=0, atol=1e-6)
    torch.testing.assert_close(fused.eps, eager.eps, rtol=1e-6, atol=0)
    assert torch.equal(fused.divergences, eager.divergences) and fused.evaluations == eager.evaluations


# ---------------------------------------------------------------------- model passes
class Counted(torch.autograd.Function):
    """``0.5 |z|^2`` per chain, counting the rows of every forward and backward pass."""

    rows = {"forward": 0, "backward": 0}

    @staticmethod
    def forward(ctx, z):
        Counted.rows["forward"] += z.shape[0]
        ctx.save_for_backward(z)
        return 0.5 * z.square().sum(1)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        Counted.rows["backward"] += z.shape[0]
        return grad[:, None] * z


def check_accounting(name: str, monkeypatch) -> None:
    from latentmcmc.energy import Target

    monkeypatch.setattr(Target, "check_independent_chains", lambda self, z: None)  # a check, not the kernel's cost
    Counted.rows.update(forward=0, backward=0)
    chains = sampler(name, lambda z: Counted.apply(z)).run(torch.randn(10, 2, dtype=torch.float64), steps=5, warmup=3,
                                                          seed=1, progress=False, fuse=False)
    assert chains.evaluations.forward * 10 == Counted.rows["forward"]
    assert chains.evaluations.backward * 10 == Counted.rows["backward"]


# ---------------------------------------------------------------------- bad options
def check_bad_options(name: str) -> None:
    entry = SAMPLERS[name]
    declared = declared_options()
    for option_name in entry.options:
        option = declared[option_name]
        if option.check is None:
            continue
        raised = 0
        for bad in BAD_VALUES:
            try:
                entry.cls(GAUSS, **{option_name: bad})
            except ValueError as err:
                raised += 1
                assert option_name in str(err), (option_name, bad, str(err))
        assert raised, f"no bad value was refused for {name}'s option {option_name}"
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        entry.cls(GAUSS, no_such_option=1)
    with pytest.raises(ValueError, match="steps"):
        entry.cls(GAUSS).run(torch.zeros(4, 2), steps=0, warmup=1)


# ---------------------------------------------------------------------- the METHODS table


# ---------------------------------------------------------------------- other latent priors
PRIOR_REGIONS = (lambda z: z[..., 0] > 0, lambda z: z[..., 1] > 0.2, lambda z: z[..., 0] > 0.8)


def _axis(edges: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres and widths of one axis cut at ``edges`` (pieces of increasing points)."""
    cuts = torch.unique(torch.cat(edges))
    return (cuts[1:] + cuts[:-1]) / 2, cuts[1:] - cuts[:-1]


def prior_truth(spec: str) -> torch.Tensor:
    """Region probabilities under ``prior_grid(spec)``."""
    return prior_grid(spec)[0]


def prior_log_z(spec: str) -> float:
    """``log int p(z) exp(-beta U(G(z))) dz``: the normaliser of ``exp(-E)`` relative to the (normalised) prior."""
    return prior_grid(spec)[1]


@functools.lru_cache(maxsize=4)
def prior_grid(spec: str) -> tuple[torch.Tensor, float]:
    """Region probabilities of ``p(z) exp(-beta U(G(z)))`` in the prior's space by the midpoint rule.

    Cells are 0.01 wide where the regions' edges (0, 0.2, 0.8) lie, so the rule's error is O(width^2);
    a heavy-tailed prior's grid widens to 0.5 out to |z| = 60 (beyond it a Student-t with 5 degrees of
    freedom keeps ~1e-8 of its mass per coordinate).
    """
    energy = small_latent_energy(prior=spec)
    dist = energy.latent_prior.distribution
    support = dist.support
    low, high = (float(support.lower_bound), float(support.upper_bound)) if hasattr(support, "lower_bound") else (-60, 60)
    inner = max(low, -6.0), min(high, 6.0)
    pieces = [torch.linspace(inner[0], inner[1], int(round((inner[1] - inner[0]) / 0.01)) + 1, dtype=torch.float64)]
    if low < inner[0]:
        pieces += [torch.linspace(low, inner[0], int((inner[0] - low) / 0.5) + 1, dtype=torch.float64),
                   torch.linspace(inner[1], high, int((high - inner[1]) / 0.5) + 1, dtype=torch.float64)]
    centres, widths = _axis(pieces)
    points = torch.cartesian_prod(centres, centres)
    area = torch.outer(widths, widths).reshape(-1)
    with torch.no_grad():
        log_density = torch.cat([
            dist.log_prob(p).sum(1) - energy.beta * energy.energy_of_critic(energy.generator(p)).reshape(-1)
            for p in points.split(65536)])
    probs = torch.softmax(log_density + area.log(), 0)
    regions = torch.stack([(probs * region(points).double()).sum() for region in PRIOR_REGIONS])
    return regions, float(torch.logsumexp(log_density + area.log(), 0))


def check_prior(name: str, spec: str) -> None:
    """Sampling ``exp(-E)`` with another prior than N(0, I): region probabilities of the draws, in the prior's space,
    within the Monte Carlo error of the grid truth (chains start from the prior; annealed samplers anneal from it)."""
    energy = small_latent_energy(prior=spec)
    s = sampler(name, energy)
    if not s.kernel.calibrated:
        pytest.skip(f"{name} is not exact (unadjusted)")
    z0 = energy.latent_prior.sample(400, (2,), torch.Generator().manual_seed(21), torch.float64)
    chains = s.run(z0, steps=200, warmup=100, seed=22, progress=False)
    z = energy.latent(chains.draws)
    per_chain = torch.stack([region(z).double().mean(1) for region in PRIOR_REGIONS], 1)
    estimate, se = across_chain_mean(per_chain)
    truth = prior_truth(spec)
    score = (estimate - truth) / se
    assert float(score.abs().max()) < z_threshold(len(PRIOR_REGIONS)), (score, estimate, truth)
