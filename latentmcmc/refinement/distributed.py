"""Chains sharded over the processes of a ``torch.distributed`` job (``torchrun``), gathered on rank 0.

A refinement of ``num_chains`` chains is cut into blocks (:func:`~latentmcmc.refinement.blocks.block_ranges`);
block ``b`` is defined by its seeds :func:`~latentmcmc.refinement.blocks.stream_seeds` ``(seed, b)``, so it gives
the same draws wherever it runs.  Rank ``r`` of ``W`` runs blocks ``r, r + W, r + 2W, ...``; rank 0
gathers every block (``gather_object``) and computes ESS, R-hat and the quality metrics over all
recorded chains.  With the default block size ``ceil(num_chains / W)`` each rank runs one block, and the
result equals a one-process run with ``block_size=ceil(num_chains / W)`` and the same seed.

Use it through :func:`latentmcmc.refinement.refine`, which shards by itself inside an initialised
process group (:mod:`latentmcmc.process_group`: NCCL on CUDA, Gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.distributed as dist
from torch import Tensor

from ..energy import LatentEnergy
from .blocks import BlockRun, block_ranges, run_blocks
from .options import RefineOptions

__all__ = ["run_sharded"]


def _to(obj, device: torch.device):
    """A copy of a dataclass (a :class:`BlockRun`, its :class:`Chains`) with every tensor on ``device``:
    tensor fields, tensors in dict fields, and nested dataclasses."""
    def move(value):
        if isinstance(value, Tensor):
            return value.to(device)
        if dataclasses.is_dataclass(value):
            return _to(value, device)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return dataclasses.replace(obj, **{f.name: move(getattr(obj, f.name)) for f in dataclasses.fields(obj)})


def run_sharded(energy: LatentEnergy, latent_shape: tuple[int, ...], options: RefineOptions,
                device: torch.device, **saving) -> tuple[list[BlockRun], bool] | None:
    """Run this rank's blocks and gather all blocks on rank 0: ``(blocks, interrupted)`` there, None elsewhere.

    ``saving``: ``checkpoint``/``checkpoint_every``/``resume`` of :func:`run_blocks`, this rank's state.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if rank != 0:
        saving.pop("tracker", None)  # rank 0 runs block 0, which the tracker follows
    if options.warmup == "auto" or options.until is not None:
        raise ValueError("warmup='auto' and stop rules need one block, so they do not run under torchrun")
    options = options.replace(block_size=options.block_size or math.ceil(options.num_chains / world),
                              progress=options.progress if rank == 0 else False)
    mine = list(range(rank, len(block_ranges(options.num_chains, options.block_size)), world))
    done, interrupted = run_blocks(energy, latent_shape, options, mine, device, **saving) if mine else ([], False)
    payload = ([_to(blk, torch.device("cpu")) for blk in done], interrupted)
    gathered: list | None = [None] * world if rank == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    if rank != 0:
        return None
    blocks = [_to(blk, device) for part, _ in gathered for blk in part]
    return blocks, any(flag for _, flag in gathered)
