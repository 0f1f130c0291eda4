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

from . import process_group
from .chains import Chains
from .energy import LatentEnergy
from .samplers import MALA, AnnealedLangevin, AnnealedMALA, Langevin, Sampler

__all__ = ["SAMPLERS", "Refinement", "BlockRun", "refine", "run_blocks", "assemble", "block_ranges", "make_sampler",
           "run_metrics", "block_seed"]

SAMPLERS: dict[str, type[Sampler]] = {
    "langevin": Langevin,
    "mala": MALA,
    "annealed-langevin": AnnealedLangevin,
    "annealed-mala": AnnealedMALA,
}


@dataclass
class Refinement:
    """A refinement run: the chains, the starting and final latents and samples, and its metrics."""

    chains: Chains  # the recorded run (block 0 of a blocked run)
    z0: Tensor  # (chains, *latent_shape) prior draws every chain started from
    z: Tensor  # (chains, *latent_shape) every chain's final state
    before: Tensor  # G(z0)
    after: Tensor  # G(z)
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: Tensor | None = None  # data the generator was trained on, for plots (when known)


def make_sampler(name: str, energy: LatentEnergy, eps: float, schedule: str = "linear",
                 compile: bool | str = False) -> Sampler:
    """A sampler by its CLI name (``langevin``, ``mala``, ``annealed-langevin``, ``annealed-mala``).

    ``compile``: see :func:`~latentmcmc.energy.compile_target`."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    cls = SAMPLERS[name]
    if name.startswith("annealed"):
        return cls(energy, eps=eps, schedule=schedule, compile=compile)
    return cls(energy, eps=eps, compile=compile)


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


def block_seed(seed: int, block: int) -> int:
    """Seed of block ``block`` of a blocked run: a hash of ``(seed, block)`` (NumPy's SeedSequence)."""
    import numpy as np

    words = np.random.SeedSequence([int(seed), int(block)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def _prior_draws(chains: int, latent_shape: tuple[int, ...], seed: int, device: torch.device) -> Tensor:
    """``z0 ~ N(0, I)`` drawn on the CPU from ``seed`` (the same starting points on every device)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(chains, *latent_shape, generator=g).to(device)


def _blocks(chains: int, block_size: int | None) -> list[tuple[int, int]]:
    if block_size is None or block_size >= chains:
        return [(0, chains)]
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return [(start, min(start + block_size, chains)) for start in range(0, chains, block_size)]


@torch.no_grad()
def _generate(generator: nn.Module, z: Tensor, batch: int) -> Tensor:
    return torch.cat([generator(z[i:i + batch]) for i in range(0, z.shape[0], batch)])


@dataclass
class BlockRun:
    """One block of a blocked refinement: its index, start and final states, per-chain statistics.

    ``chains`` is the recorded run for blocks that record their draws, ``None`` for the others
    (only what the outputs need is kept, so memory beyond a block's working set is the states).
    """

    index: int
    z0: Tensor
    z: Tensor
    acceptance_rate: Tensor
    divergences: Tensor
    frozen: Tensor
    eps: Tensor
    chains: Chains | None = None


def block_ranges(chains: int, block_size: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the blocks of ``chains`` chains (one block when ``block_size`` is None)."""
    return _blocks(chains, block_size)


def run_blocks(
    energy: LatentEnergy,
    latent_shape: tuple[int, ...],
    chains: int,
    block_size: int | None,
    indices: list[int] | None = None,
    record_blocks: int | None = None,
    *,
    sampler: str = "mala",
    eps: float = 0.01,
    steps: int = 500,
    warmup: int = 500,
    adapt: bool = True,
    schedule: str = "linear",
    thin: int = 1,
    seed: int = 0,
    progress: bool | None = None,
    keep_warmup: bool = False,
    device: torch.device | None = None,
    compile: bool | str = False,
    stream: int | None = None,
) -> tuple[list[BlockRun], bool]:
    """Run the blocks ``indices`` (default: all) of a blocked refinement; returns them and whether Ctrl-C stopped it.

    Block ``b`` starts from ``z0 ~ N(0, I)`` drawn from its seed and samples with the same seed: ``seed``
    itself for an unblocked run, :func:`block_seed` ``(seed, b)`` otherwise.  Blocks ``b <
    record_blocks`` (all when None) record every draw; the others keep only their final state.
    """
    ranges = _blocks(chains, block_size)
    indices = list(range(len(ranges))) if indices is None else list(indices)
    mcmc = make_sampler(sampler, energy, eps, schedule, compile)
    done: list[BlockRun] = []
    for b in indices:
        start, stop = ranges[b]
        s = seed if len(ranges) == 1 else block_seed(seed, b)
        z0 = _prior_draws(stop - start, tuple(latent_shape), s, device)
        full = record_blocks is None or b < record_blocks
        try:
            run = mcmc.run(z0, steps=steps, warmup=warmup, adapt=adapt and warmup > 0, thin=thin, seed=s,
                           progress=progress if len(indices) == 1 else False, keep_warmup=keep_warmup and full,
                           record="full" if full else "last", stream=stream)
        except KeyboardInterrupt:
            if not done:
                raise
            return done, True  # keep the blocks completed so far
        done.append(BlockRun(b, z0, run.last, run.acceptance_rate, run.divergences, run.frozen, run.eps,
                             run if full else None))
        if run.extra.get("interrupted"):
            return done, True
    return done, False


def assemble(
    blocks: list[BlockRun],
    generator: nn.Module,
    interrupted: bool = False,
    dataset=None,
    extra_metrics: dict[str, Any] | None = None,
) -> Refinement:
    """Blocks (in index order) -> one :class:`Refinement`: all final states, samples, metrics.

    ESS and R-hat are computed over every chain of the blocks that recorded their draws.
    """
    blocks = sorted(blocks, key=lambda blk: blk.index)
    z0 = torch.cat([blk.z0 for blk in blocks])
    z = torch.cat([blk.z for blk in blocks])
    recorded = [blk.chains for blk in blocks if blk.chains is not None]
    if not recorded:
        raise ValueError("no block recorded its draws (block 0 always does): pass the blocks in full")
    diagnostic = Chains.concat(recorded) if len(recorded) > 1 else recorded[0]
    batch = blocks[0].z0.shape[0]
    before, after = _generate(generator, z0, batch), _generate(generator, z, batch)
    metrics = {**run_metrics(diagnostic), **(extra_metrics or {})}
    if len(blocks) > 1:
        acc = torch.cat([blk.acceptance_rate for blk in blocks])
        metrics.update(
            chains=int(z.shape[0]), blocks=len(blocks), block_size=batch, diagnostic_chains=diagnostic.num_chains,
            acceptance=float(acc.mean()), eps_mean=float(torch.cat([blk.eps for blk in blocks]).mean()),
            divergences=int(sum(int(blk.divergences.sum()) for blk in blocks)),
            frozen_chains=int(sum(int(blk.frozen.sum()) for blk in blocks)),
        )
    if interrupted:
        metrics["interrupted"] = True
    reference = None
    if dataset is not None:
        from .metrics import dataset_quality

        q_before, q_after = dataset_quality(dataset, before), dataset_quality(dataset, after)
        if q_before is not None:
            metrics["quality"] = {"data": dataset.name, "before": q_before, "after": q_after}
        reference = dataset.x
    return Refinement(diagnostic, z0, z, before, after, metrics, reference)


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
    block_size: int | None = None,
    record_blocks: int | None = None,
    distributed: bool | None = None,
    compile: bool | str = False,
    stream: int | None = None,
) -> Refinement | None:
    r"""Sample ``exp(-E)``, ``E(z) = beta s U(G(z)) + 0.5 |z|^2``, from ``chains`` prior draws; measure it.

    ``dataset`` (a built-in :class:`~latentmcmc.training.Dataset`) adds the data set's quality metrics
    before and after refinement.  The chains start from ``z0 ~ N(0, I)`` drawn from ``seed`` on the CPU,
    so a seed gives the same starting points on every device; sampling uses ``seed`` too.

    ``block_size``: run the chains in blocks of this many, one after the other.  Block ``b`` draws its
    starting points and noise from :func:`block_seed` ``(seed, b)`` and adapts its own step size, so a
    blocked run gives the same draws however its blocks are scheduled.  ``record_blocks=k`` records
    every draw of the first ``k`` blocks only (they carry ESS and R-hat) and keeps just the final
    state of the others, so memory beyond one block's working set is the chains' states.

    ``distributed`` (default: when a ``torch.distributed`` process group of more than one process is
    initialised, e.g. under torchrun): every rank calls ``refine``; the blocks (default size
    ``ceil(chains / world size)``) are dealt over the ranks and gathered on rank 0, which returns the
    result; the other ranks return ``None``.  See :mod:`latentmcmc.distributed`.

    ``compile`` (True or a ``torch.compile`` mode) compiles the energy; see
    :func:`~latentmcmc.energy.compile_target`.  ``stream=k`` keeps recorded draws in (pinned) host
    memory, copied from the device every ``k`` draws (see :meth:`Sampler.run`).
    """
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    if record_blocks is not None and record_blocks < 1:
        raise ValueError(f"record_blocks must be >= 1 (or None for all), got {record_blocks}")
    device = torch.device(device) if device is not None else next(
        (p.device for p in generator.parameters()), torch.device("cpu"))
    energy = LatentEnergy(generator, critic, beta=beta, prior=prior, latent_shape=tuple(latent_shape),
                          critic_sign=critic_sign)
    options = dict(sampler=sampler, eps=eps, steps=steps, warmup=warmup, adapt=adapt, schedule=schedule, thin=thin,
                   seed=seed, progress=progress, keep_warmup=keep_warmup, device=device, compile=compile,
                   stream=stream)
    extra = {"beta": beta, "prior": prior, "critic_sign": critic_sign}
    t0 = time.perf_counter()
    if distributed is None:
        distributed = process_group.active()
    if distributed:
        from .distributed import run_sharded  # imports this module

        gathered = run_sharded(energy, tuple(latent_shape), chains, block_size, record_blocks, options)
        if gathered is None:
            return None
        (blocks, interrupted), extra["world_size"] = gathered, process_group.rank_and_world()[1]
    else:
        blocks, interrupted = run_blocks(energy, tuple(latent_shape), chains, block_size, None, record_blocks,
                                         **options)
    extra["seconds"] = time.perf_counter() - t0
    return assemble(blocks, generator, interrupted, dataset, extra)
