"""Chains sharded over the processes of a ``torch.distributed`` job (``torchrun``), gathered on rank 0.

A refinement of ``chains`` chains is cut into blocks (:func:`latentmcmc.refinement.block_ranges`);
block ``b`` is defined by its seed :func:`~latentmcmc.refinement.block_seed` ``(seed, b)``, so it gives
the same draws wherever it runs.  Rank ``r`` of ``W`` runs blocks ``r, r + W, r + 2W, ...``; rank 0
gathers every block (``gather_object``) and computes ESS, R-hat and the quality metrics over all
recorded chains.  With the default block size ``ceil(chains / W)`` each rank runs one block, and the
result equals a one-process run with ``block_size=ceil(chains / W)`` and the same seed.

Use it through :func:`latentmcmc.refinement.refine`, which shards by itself inside an initialised
process group.  Backends: NCCL when the chains live on CUDA (each rank on ``cuda:LOCAL_RANK``), Gloo
on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch
import torch.distributed as dist
from torch import Tensor

from .chains import Chains
from .energy import LatentEnergy
from .refinement import BlockRun, block_ranges, run_blocks

__all__ = ["world_from_env", "init_distributed", "active", "world_size", "run_sharded"]


def world_from_env() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the job torchrun started (once); returns ``(rank, world_size, this rank's device)``."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def active() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def _to(chains: Chains, device: torch.device) -> Chains:
    moved = {f.name: getattr(chains, f.name).to(device) for f in dataclasses.fields(Chains)
             if isinstance(getattr(chains, f.name), Tensor)}
    extra = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in chains.extra.items()}
    return dataclasses.replace(chains, **moved, extra=extra)


def _block_to(block: BlockRun, device: torch.device) -> BlockRun:
    moved = {f.name: getattr(block, f.name).to(device) for f in dataclasses.fields(BlockRun)
             if isinstance(getattr(block, f.name), Tensor)}
    return dataclasses.replace(block, **moved, chains=None if block.chains is None else _to(block.chains, device))


def run_sharded(energy: LatentEnergy, latent_shape: tuple[int, ...], chains: int, block_size: int | None,
                record_blocks: int | None, options: dict) -> tuple[list[BlockRun], bool] | None:
    """Run this rank's blocks and gather all blocks on rank 0: ``(blocks, interrupted)`` there, None elsewhere."""
    rank, world = dist.get_rank(), dist.get_world_size()
    block_size = block_size or math.ceil(chains / world)
    mine = list(range(rank, len(block_ranges(chains, block_size)), world))
    options = {**options, "progress": options.get("progress") if rank == 0 else False}
    done, interrupted = (run_blocks(energy, latent_shape, chains, block_size, mine, record_blocks, **options)
                         if mine else ([], False))
    payload = ([_block_to(blk, torch.device("cpu")) for blk in done], interrupted)
    gathered: list | None = [None] * world if rank == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    if rank != 0:
        return None
    device = options.get("device") or torch.device("cpu")
    blocks = [_block_to(blk, device) for part, _ in gathered for blk in part]
    return blocks, any(flag for _, flag in gathered)
