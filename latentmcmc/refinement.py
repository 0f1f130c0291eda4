"""Refine a generator's samples: run a latent sampler and measure the run and the samples it gives.

This is what ``latentmcmc refine`` and ``latentmcmc demo`` do, as one Python call::

    result = refine(generator, critic, chains=1000, sampler="mala", eps=0.01, steps=500, warmup=500)
    result.after          # G(z) at the chains' final states
    result.metrics        # acceptance, ESS, R-hat, divergences, quality before/after
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .chains import Chains
from .energy import LatentEnergy
from .samplers import MALA, AnnealedLangevin, AnnealedMALA, Langevin, Sampler

__all__ = ["SAMPLERS", "Refinement", "refine", "make_sampler", "run_metrics"]

SAMPLERS: dict[str, type[Sampler]] = {
    "langevin": Langevin,
    "mala": MALA,
    "annealed-langevin": AnnealedLangevin,
    "annealed-mala": AnnealedMALA,
}


@dataclass
class Refinement:
    """A refinement run: the chains, the starting and final latents and samples, and its metrics."""

    chains: Chains
    z0: Tensor  # (chains, *latent_shape) prior draws the chains started from
    before: Tensor  # G(z0)
    after: Tensor  # G(chains.last)
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: Tensor | None = None  # data the generator was trained on, for plots (when known)


def make_sampler(name: str, energy: LatentEnergy, eps: float, schedule: str = "linear") -> Sampler:
    """A sampler by its CLI name (``langevin``, ``mala``, ``annealed-langevin``, ``annealed-mala``)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    cls = SAMPLERS[name]
    if name.startswith("annealed"):
        return cls(energy, eps=eps, schedule=schedule)
    return cls(energy, eps=eps)


def run_metrics(chains: Chains) -> dict[str, Any]:
    """Acceptance, step size, divergences, ESS (bulk/tail, energy and worst coordinate) and R-hat of a run."""
    from .diagnostics import ess, rhat

    m: dict[str, Any] = {
        "sampler": chains.sampler,
        "chains": chains.num_chains,
        "warmup": chains.warmup,
        "draws": chains.num_draws,
        "thin": chains.thin,
        "eps_mean": float(chains.eps.mean()),
        "acceptance": float(chains.acceptance_rate.mean()),
        "divergences": int(chains.divergences.sum()),
        "frozen_chains": int(chains.frozen.sum()),
    }
    if chains.mh_accept_rate is not None:
        m["mala_acceptance_would_be"] = float(chains.mh_accept_rate.mean())
    if chains.num_draws >= 4:  # split chains need at least two draws per half
        flat = chains.draws.reshape(chains.num_chains, chains.num_draws, -1)
        m.update(
            ess_bulk_energy=float(ess(chains.energy)),
            ess_tail_energy=float(ess(chains.energy, method="tail")),
            rhat_energy=float(rhat(chains.energy)),
            ess_bulk_z_min=float(ess(flat).min()),
            ess_tail_z_min=float(ess(flat, method="tail").min()),
            rhat_z_max=float(rhat(flat).max()),
        )
    if chains.log_weights is not None:
        est = chains.log_normalizer()
        m.update(log_normalizer=est.estimate, log_normalizer_stderr=est.stderr, importance_ess=est.ess)
    if chains.extra.get("interrupted"):
        m["interrupted"] = True
    return m


def _prior_draws(chains: int, latent_shape: tuple[int, ...], seed: int, device: torch.device) -> Tensor:
    """``z0 ~ N(0, I)`` drawn on the CPU from ``seed`` (the same starting points on every device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(chains, *latent_shape, generator=g).to(device)


def refine(
    generator: nn.Module,
    critic: nn.Module,
    latent_shape: tuple[int, ...],
    chains: int = 1000,
    sampler: str = "mala",
    eps: float = 0.01,
    steps: int = 500,
    warmup: int = 500,
    adapt: bool = True,
    beta: float = 1.0,
    prior: bool = True,
    schedule: str = "linear",
    thin: int = 1,
    seed: int = 0,
    critic_sign: float = 1.0,
    dataset=None,
    progress: bool | None = None,
    device: str | torch.device | None = None,
    keep_warmup: bool = False,
) -> Refinement:
    r"""Sample ``exp(-E)``, ``E(z) = beta s U(G(z)) + 0.5 |z|^2``, from ``chains`` prior draws; measure it.

    ``dataset`` (a built-in :class:`~latentmcmc.training.Dataset`) adds the data set's quality metrics
    before and after refinement.  The chains start from ``z0 ~ N(0, I)`` drawn from ``seed`` on the CPU,
    so a seed gives the same starting points on every device; sampling uses ``seed`` too.
    """
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    device = torch.device(device) if device is not None else next(
        (p.device for p in generator.parameters()), torch.device("cpu"))
    if warmup == 0:
        adapt = False
    energy = LatentEnergy(generator, critic, beta=beta, prior=prior, latent_shape=tuple(latent_shape),
                          critic_sign=critic_sign)
    mcmc = make_sampler(sampler, energy, eps, schedule)
    z0 = _prior_draws(chains, tuple(latent_shape), seed, device)
    t0 = time.perf_counter()
    run = mcmc.run(z0, steps=steps, warmup=warmup, adapt=adapt, thin=thin, seed=seed, progress=progress,
                   keep_warmup=keep_warmup)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        before, after = generator(z0), generator(run.last)
    metrics = {**run_metrics(run), "beta": beta, "prior": prior, "critic_sign": critic_sign, "seconds": seconds}
    reference = None
    if dataset is not None:
        from .metrics import dataset_quality

        q_before, q_after = dataset_quality(dataset, before), dataset_quality(dataset, after)
        if q_before is not None:
            metrics["quality"] = {"data": dataset.name, "before": q_before, "after": q_after}
        reference = dataset.x
    return Refinement(run, z0, before, after, metrics, reference)
