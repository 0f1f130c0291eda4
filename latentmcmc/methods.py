"""Refinement methods compared at an equal budget: the samplers, and the classic baselines.

A method turns prior draws ``z0`` into refined latents at a budget of ``B`` passes through the model
per sample (a forward pass of ``U(G(z))`` counts one, its gradient another).  :data:`METHODS` is the
table ``latentmcmc compare`` reads: every named sampler of :data:`~latentmcmc.samplers.SAMPLERS`, plus

* ``prior``: ``G(z0)`` as drawn; ``truncation``: the truncation trick ``z = psi z0`` (psi 0.7);
* ``mh-gan``: independent Metropolis-Hastings with prior proposals and the calibrated discriminator's
  density ratio (Turner et al. 2019), ``B`` proposals per sample;
* ``drs``: discriminator rejection sampling (Azadi et al. 2019): ``B`` prior candidates per sample,
  each accepted with probability ``sigmoid(F - gamma)``, ``F = l - l* - log(1 - exp(l - l* - 1e-6))``;
* ``dot``: discriminator optimal transport in latent space (Tanaka 2019): ``B/2`` Adam steps on
  ``|z - z0| - l(G(z)) / k_eff`` from each ``z0``.

Only the MCMC samplers target ``exp(-E)`` at the given beta (``exact``); MH-GAN does too when no data
is known to calibrate with (then its ratio is ``exp(-beta U)``), else its calibrated slope sets its own
effective beta.  DRS is approximate (the gamma shift), DOT and truncation are deterministic maps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .calibration import Calibration, calibrate
from .chains import Chains, Evaluations
from .energy import LatentEnergy
from .priors import STANDARD_NORMAL
from .samplers.registry import SAMPLERS, SamplerOptions, make_sampler

__all__ = ["Problem", "MethodRun", "Method", "METHODS", "SamplerMethod", "Prior", "Truncation", "MHGAN", "DRS", "DOT"]


@dataclass
class Problem:
    """A model to refine: ``E(u) = beta s U(G(T(u))) + E_0(u)`` (``0.5|z|^2`` for the N(0, I) prior), and real data
    when known (for calibration).  ``prior`` is :class:`~latentmcmc.LatentEnergy`'s; methods draw and move chain
    states ``u`` (the latents themselves for N(0, I)).
    """

    generator: nn.Module
    critic: nn.Module
    latent_shape: tuple[int, ...]
    beta: float = 1.0
    critic_sign: float = 1.0
    critic_output: str | None = None
    real: Tensor | None = None
    sampler_options: SamplerOptions = field(default_factory=SamplerOptions)
    prior: Any = True
    condition: Tensor | None = None  # (chains, ...) per-chain conditions of a class-conditional model
    _energy: LatentEnergy | None = None
    _calibration: Calibration | None = None

    @property
    def energy(self) -> LatentEnergy:
        if self._energy is None:
            self._energy = LatentEnergy(self.generator, self.critic, beta=self.beta, latent_shape=self.latent_shape,
                                        critic_sign=self.critic_sign, critic_output=self.critic_output,
                                        prior=self.prior, condition=self.condition)
        return self._energy

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:  # real data comes without conditions: a conditional critic stays uncalibrated
            real = self.real if self.condition is None else None
            self._calibration = calibrate(self.generator, self.energy.energy_of_critic, self.latent_shape, real,
                                          self.beta, prior=self.energy.latent_prior)
        return self._calibration

    @torch.no_grad()
    def logit(self, z: Tensor) -> Tensor:
        """The (calibrated, when data is known) discriminator logit ``l(G(z))``."""
        return self.calibration.logit(self.energy.critic_energy, self.generate(z))

    def generate(self, u: Tensor) -> Tensor:
        """``G(T(u))``: samples of chain states."""
        return self.energy.generate(u)

    def rows(self, n: int) -> int:
        """At least ``n`` rows that a batch of the problem can hold: a multiple of the chains with conditions."""
        if self.condition is None:
            return n
        chains = self.condition.shape[0]
        return chains * -(-n // chains)

    def energy_of_first(self, n: int) -> LatentEnergy:
        """The energy of the first ``n`` chains (their conditions)."""
        return self.energy if self.condition is None else self.energy.with_condition(self.condition[:n])

    def draw(self, n: int, rng: torch.Generator, like: Tensor) -> Tensor:
        """``n`` prior draws as chain states shaped like ``like``'s rows, from ``rng``."""
        prior = self.energy.latent_prior or STANDARD_NORMAL
        return prior.sample(n, tuple(like.shape[1:]), rng, like.dtype, like.device)

    def truncate(self, u: Tensor, psi: float) -> Tensor:
        """The truncation trick ``z -> psi z`` in the prior's space (a ValueError where the prior gives it no meaning)."""
        prior = self.energy.latent_prior
        return psi * u if prior is None else prior.truncate(u, psi)


@dataclass
class MethodRun:
    """What a method produced: refined latents, the passes it spent per sample, its wall time, its chains."""

    z: Tensor
    evaluations: Evaluations
    seconds: float
    chains: Chains | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    summary: str
    exact: bool

    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun: ...


class Prior:
    summary = "G(z) for z ~ the prior: the generator as trained"
    exact = False

    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        return MethodRun(z0.clone(), Evaluations(0, 0), 0.0)


class Truncation:
    summary = "the truncation trick: z = psi z0 (psi 0.7)"
    exact = False

    def __init__(self, psi: float = 0.7) -> None:
        self.psi = psi

    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        return MethodRun(problem.truncate(z0, self.psi), Evaluations(0, 0), 0.0, notes={"psi": self.psi})


class SamplerMethod:
    """A named sampler run for as many steps as the budget buys; half of them warm-up (adaptation or annealing).

    The per-step cost is measured on a one-step run of two chains.  Annealed samplers' final states
    are resampled by their AIS weights (systematic resampling), so that the output is a sample of the target.
    """

    exact = True

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def summary(self) -> str:
        return SAMPLERS[self.name].summary

    def _per_step(self, problem: Problem, z0: Tensor) -> int:
        probe = make_sampler(self.name, problem.energy_of_first(2), problem.sampler_options)
        one = probe.run(z0[:2], steps=1, warmup=1, adapt=False, seed=0, progress=False)
        init = Evaluations(1, 0 if one.extra.get("last_grad") is None else 1)
        return max(1, (one.evaluations.passes - init.passes) // 2)

    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        per_step = self._per_step(problem, z0)
        total = max(4, budget // per_step)
        warmup = total // 2
        few = total < 20  # noted in the table: adaptation and mixing barely start
        sampler = make_sampler(self.name, problem.energy, problem.sampler_options)
        t0 = time.perf_counter()
        chains = sampler.run(z0, steps=total - warmup, warmup=warmup, seed=seed, progress=False)
        seconds = time.perf_counter() - t0
        z, notes = chains.last, {"warmup": warmup, "steps": total - warmup}
        if few:
            notes["few_steps"] = total
        if chains.log_weights is not None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                notes["weights_reliable"] = chains.log_normalizer().reliable
            from .diagnostics.importance import systematic_resample

            pick = systematic_resample(chains.importance_weights(), torch.Generator().manual_seed(seed)).to(z.device)
            z, notes["resampled"] = z[pick], "by AIS weights"
        return MethodRun(z, chains.evaluations, seconds, chains, notes)


class MHGAN:
    summary = "MH-GAN: independent Metropolis-Hastings, prior proposals, calibrated discriminator ratio"

    @property
    def exact(self) -> bool:
        return False  # decided per problem: see run's notes["targets_beta"]

    @torch.no_grad()
    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        rng = torch.Generator(device=z0.device).manual_seed(seed)
        t0 = time.perf_counter()
        z, logit = z0.clone(), problem.logit(z0)
        accepted = torch.zeros(z.shape[0], device=z.device)
        for _ in range(max(1, budget - 1)):
            proposal = problem.draw(z.shape[0], rng, z)
            logit_new = problem.logit(proposal)
            u = torch.rand(z.shape[0], generator=rng, device=z.device, dtype=logit.dtype)
            take = torch.log(u) < logit_new - logit
            z = torch.where(take.reshape(-1, *([1] * (z.dim() - 1))), proposal, z)
            logit = torch.where(take, logit_new, logit)
            accepted += take
        cal = problem.calibration
        return MethodRun(z, Evaluations(max(1, budget - 1) + 1, 0), time.perf_counter() - t0,
                         notes={"acceptance": float(accepted.mean() / max(1, budget - 1)), "calibrated": cal.fitted,
                                "targets_beta": cal.slope})


class DRS:
    summary = "discriminator rejection sampling: B prior candidates per sample, sigmoid(F - gamma) acceptance"
    exact = False

    @torch.no_grad()
    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        rng = torch.Generator(device=z0.device).manual_seed(seed)
        t0 = time.perf_counter()
        n, budget = z0.shape[0], max(1, budget)
        burn = problem.draw(problem.rows(10_000), rng, z0)
        l_burn = problem.logit(burn)
        l_max = float(l_burn.max())

        def f(logit: Tensor) -> Tensor:
            gap = (logit - l_max).clamp(max=0.0)
            return gap - torch.log1p(-torch.exp(gap - 1e-6))

        # gamma: about two acceptances expected per sample among its B candidates (bisection on the burn-in set)
        f_burn = f(l_burn)
        target = min(1.0, 2.0 / budget)
        lo, hi = -50.0, 50.0
        for _ in range(60):
            gamma = 0.5 * (lo + hi)
            lo, hi = (gamma, hi) if float(torch.sigmoid(f_burn - gamma).mean()) > target else (lo, gamma)
        z, best = z0.clone(), torch.full((n,), -float("inf"), device=z0.device, dtype=l_burn.dtype)
        done = torch.zeros(n, dtype=torch.bool, device=z0.device)
        fallback_z = z0.clone()
        for _ in range(budget):
            cand = problem.draw(z0.shape[0], rng, z0)
            logit = problem.logit(cand)
            l_max = max(l_max, float(logit.max()))
            score = f(logit)
            u = torch.rand(n, generator=rng, device=z0.device, dtype=score.dtype)
            take = ~done & (u < torch.sigmoid(score - gamma))
            shape = (-1,) + (1,) * (z0.dim() - 1)
            z = torch.where(take.reshape(shape), cand, z)
            better = score > best
            fallback_z = torch.where(better.reshape(shape), cand, fallback_z)
            best = torch.where(better, score, best)
            done |= take
        z = torch.where(done.reshape((-1,) + (1,) * (z0.dim() - 1)), z, fallback_z)
        return MethodRun(z, Evaluations(budget, 0), time.perf_counter() - t0,
                         notes={"gamma": gamma, "accepted_share": float(done.double().mean()),
                                "calibrated": problem.calibration.fitted})


class DOT:
    summary = "discriminator optimal transport: B/2 Adam steps on |z - z0| - l(G(z)) / k_eff"
    exact = False

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def run(self, problem: Problem, z0: Tensor, budget: int, seed: int) -> MethodRun:
        rng = torch.Generator(device=z0.device).manual_seed(seed)
        t0 = time.perf_counter()
        with torch.no_grad():  # k_eff: the largest slope of l(G(z)) between pairs of prior draws
            m = problem.rows(1000)
            a, b = problem.draw(m, rng, z0), problem.draw(m, rng, z0)
            dist = (a - b).reshape(m, -1).norm(dim=1).clamp(min=1e-6)
            k_eff = float(((problem.logit(a) - problem.logit(b)).abs() / dist).max())
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        steps = max(1, budget // 2)
        cal = problem.calibration
        for _ in range(steps):
            with torch.enable_grad():
                x = problem.generate(z)
                logit = cal.logit(problem.energy.critic_energy, x)
                loss = ((z - z0).reshape(z.shape[0], -1).norm(dim=1) - logit / k_eff).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
        return MethodRun(z.detach(), Evaluations(steps, steps), time.perf_counter() - t0, notes={"k_eff": k_eff})


def _methods() -> dict[str, Method]:
    table: dict[str, Method] = {"prior": Prior(), "truncation": Truncation()}
    table.update({name: SamplerMethod(name) for name in SAMPLERS})
    table.update({"mh-gan": MHGAN(), "drs": DRS(), "dot": DOT()})
    return table


METHODS: dict[str, Method] = _methods()
"""Refinement methods by name: the baselines and every named sampler (see the module docstring)."""
