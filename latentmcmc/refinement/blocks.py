"""Chains in blocks: each block's seed, starting points and run; the unit of chunking and of torchrun sharding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..chains import Chains, chains_from_state, chains_to_state
from ..energy import LatentEnergy
from ..priors import STANDARD_NORMAL, LatentPrior
from ..samplers.registry import make_sampler
from .options import RefineOptions

__all__ = ["BlockRun", "block_seed", "stream_seeds", "block_ranges", "prior_draws", "run_blocks", "block_to_state",
           "block_from_state"]

START, SAMPLER = 0, 1  # the two random streams of a block: its starting points, its sampler's noise


def _seed(*words: int) -> int:
    import numpy as np

    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def block_seed(seed: int, block: int) -> int:
    """A seed for block ``block`` of a run seeded ``seed``: a hash of ``(seed, block)`` (NumPy's SeedSequence)."""
    return _seed(seed, block)


def stream_seeds(seed: int, block: int = 0) -> tuple[int, int]:
    """``(start, sampler)``: independent seeds of block ``block``'s starting points and of its sampler's noise.

    Both are hashes of ``(seed, block, stream)``; one seed drawn for both streams would make the first
    proposal's noise equal the starting point (the same numbers twice: correlation 1).
    """
    return _seed(seed, block, START), _seed(seed, block, SAMPLER)


def prior_draws(num_chains: int, latent_shape: tuple[int, ...], seed: int, device: torch.device,
                repeat: int = 1, prior: LatentPrior | None = None) -> Tensor:
    """``z0 ~ prior`` (default ``N(0, I)``) as chain states, drawn on the CPU from ``seed`` (the same on every device).

    ``repeat > 1``: ``num_chains / repeat`` points, each repeated for ``repeat`` consecutive chains
    (the shared starts of superchains).  Another prior than ``N(0, I)`` gives states in its unconstrained
    space (:meth:`~latentmcmc.priors.LatentPrior.sample`).
    """
    points = (prior or STANDARD_NORMAL).sample(num_chains // repeat, tuple(latent_shape),
                                                torch.Generator().manual_seed(seed))
    return points.repeat_interleave(repeat, 0).to(device)


def block_ranges(num_chains: int, block_size: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the blocks of ``num_chains`` chains (one block when ``block_size`` is None)."""
    if block_size is None or block_size >= num_chains:
        return [(0, num_chains)]
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return [(start, min(start + block_size, num_chains)) for start in range(0, num_chains, block_size)]


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
    log_weights: Tensor | None = None  # annealed samplers' AIS log-weights of every chain of the block


def block_to_state(block: BlockRun) -> dict:
    """A finished block as plain data and tensors (for run-state files)."""
    d = {f: getattr(block, f) for f in ("index", "z0", "z", "acceptance_rate", "divergences", "frozen", "eps",
                                       "log_weights")}
    d["chains"] = None if block.chains is None else chains_to_state(block.chains)
    return d


def block_from_state(d: dict, device: torch.device | None) -> BlockRun:
    move = (lambda t: t.to(device)) if device is not None else (lambda t: t)
    chains = None if d["chains"] is None else chains_from_state(
        {k: move(v) if isinstance(v, Tensor) else v for k, v in d["chains"].items()})
    return BlockRun(int(d["index"]), *(move(d[f]) for f in ("z0", "z", "acceptance_rate", "divergences", "frozen",
                                                          "eps")), chains,
                    None if d.get("log_weights") is None else move(d["log_weights"]))


def run_blocks(energy: LatentEnergy, latent_shape: tuple[int, ...], options: RefineOptions,
               indices: list[int] | None = None, device: torch.device | None = None, *,
               checkpoint: Callable[[dict], None] | None = None, checkpoint_every: int | None = None,
               resume: dict | None = None, tracker=None) -> tuple[list[BlockRun], bool]:
    """Run the blocks ``indices`` (default: all) of a blocked refinement; returns them and whether Ctrl-C stopped it.

    Block ``b`` (``b = 0`` for an unblocked run) starts from ``z0 ~ prior`` drawn from its start seed
    and samples with its sampler seed, two independent streams (:func:`stream_seeds` ``(seed, b)``).
    Blocks ``b < record_blocks`` (all when None) record every draw; the others keep only their final
    state.  ``checkpoint(state)`` receives the whole state of the blocks (finished ones and the
    current run) every ``checkpoint_every`` steps and after every block; ``resume`` is such a state.
    ``tracker`` (a :class:`~latentmcmc.refinement.tracking.QualityTracker`) follows the first block.
    A conditional energy's conditions (one row per chain of the run) are cut with the blocks.
    """
    o = options
    ranges = block_ranges(o.num_chains, o.block_size)
    indices = list(range(len(ranges))) if indices is None else list(indices)
    device = device if device is not None else (torch.device(o.device) if o.device is not None else None)
    conditions, prior = getattr(energy, "condition", None), getattr(energy, "latent_prior", None)
    mcmc = make_sampler(o.sampler, energy, o.sampler_options)
    done: list[BlockRun] = [block_from_state(d, device) for d in resume["done"]] if resume else []
    current = resume.get("current") if resume else None
    finished = {blk.index for blk in done}

    def save(current_state: dict | None) -> None:
        checkpoint({"done": [block_to_state(blk) for blk in done], "current": current_state})

    for b in indices:
        if b in finished:
            continue
        start, stop = ranges[b]
        start_seed, seed = stream_seeds(o.seed, b)
        z0 = prior_draws(stop - start, tuple(latent_shape), start_seed, device, o.superchain_size, prior)
        if conditions is not None and (start, stop) != (0, conditions.shape[0]):  # the block's chains' conditions
            mcmc = make_sampler(o.sampler, energy.with_condition(conditions[start:stop]), o.sampler_options)
        full = o.record_blocks is None or b < o.record_blocks
        block_resume = current["state"] if current is not None and current["block"] == b else False
        follow = tracker is not None and b == indices[0]
        if follow and not block_resume:
            tracker.start(z0, 0 if o.warmup == "auto" else o.warmup)
        try:
            run = mcmc.run(z0, steps=o.steps, warmup=o.warmup, adapt=o.adapt and o.has_warmup and mcmc.has_step_size,
                           thin=o.thin, seed=seed, max_warmup=o.max_warmup, until=o.until, monitor_every=o.monitor_every,
                           progress=o.progress if len(indices) == 1 else False, keep_warmup=o.keep_warmup and full,
                           record=o.record if full else "last", stream=o.stream,
                           checkpoint=(lambda payload, b=b: save({"block": b, "state": payload})) if checkpoint else None,
                           checkpoint_every=checkpoint_every if checkpoint else None, resume=block_resume,
                           observers=[tracker] if follow else None, fuse=o.fuse)
        except KeyboardInterrupt:
            if not done:
                raise
            return done, True  # keep the blocks completed so far
        last = tracker.best_z if follow and o.keep == "best" and tracker.best_z is not None else run.last
        done.append(BlockRun(b, z0, last, run.acceptance_rate, run.divergences, run.frozen, run.eps,
                             run if full else None, run.log_weights))
        if run.extra.get("interrupted"):
            return done, True
        if checkpoint is not None:
            save(None)  # between blocks
    return done, False
