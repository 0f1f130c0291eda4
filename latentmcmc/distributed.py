"""Chains sharded over the processes of a ``torch.distributed`` job (``torchrun``), gathered on rank 0.

A refinement of ``chains`` chains is cut into blocks (:func:`latentmcmc.refinement.block_ranges`);
block ``b`` is defined by its seed :func:`~latentmcmc.refinement.block_seed` ``(seed, b)``, so it gives
the same draws wherever it runs.  Rank ``r`` of ``W`` runs blocks ``r, r + W, r + 2W, ...``; rank 0
gathers every block (``gather_object``), and computes ESS, R-hat and the quality metrics over all
chains.  With the default block size ``ceil(chains / W)`` each rank runs one block, and the result
equals a one-process run with ``block_size=ceil(chains / W)`` and the same seed.

Backends: NCCL when the chains live on CUDA (each rank on ``cuda:LOCAL_RANK``), Gloo on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .chains import Chains
from .energy import LatentEnergy
from .refinement import BlockRun, Refinement, assemble, block_ranges, run_blocks

__all__ = ["world_from_env", "init_distributed", "refine_distributed"]


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


def _to(chains: Chains, device: torch.device) -> Chains:
    moved = {f.name: getattr(chains, f.name).to(device) for f in dataclasses.fields(Chains)
             if isinstance(getattr(chains, f.name), Tensor)}
    extra = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in chains.extra.items()}
    return dataclasses.replace(chains, **moved, extra=extra)


def refine_distributed(
    generator: nn.Module,
    critic: nn.Module,
    latent_shape: tuple[int, ...],
    chains: int,
    block_size: int | None = None,
    record_blocks: int | None = None,
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
    keep_warmup: bool = False,
    device: torch.device | None = None,
) -> Refinement | None:
    """:func:`latentmcmc.refinement.refine` across the ranks of an initialised process group.

    Every rank calls it; rank 0 returns the gathered :class:`Refinement`, the others ``None``.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    device = device or torch.device("cpu")
    block_size = block_size or math.ceil(chains / world)
    mine = list(range(rank, len(block_ranges(chains, block_size)), world))
    energy = LatentEnergy(generator, critic, beta=beta, prior=prior, latent_shape=tuple(latent_shape),
                          critic_sign=critic_sign)
    t0 = time.perf_counter()
    done, interrupted = run_blocks(energy, tuple(latent_shape), chains, block_size, mine, record_blocks, sampler, eps,
                                   steps, warmup, adapt, schedule, thin, seed, progress if rank == 0 else False,
                                   keep_warmup, device) if mine else ([], False)
    payload = [(blk.index, blk.z0.cpu(), _to(blk.chains, torch.device("cpu"))) for blk in done]
    gathered: list | None = [None] * world if rank == 0 else None
    dist.gather_object((payload, interrupted), gathered, dst=0)
    seconds = time.perf_counter() - t0
    if rank != 0:
        return None
    blocks = [BlockRun(i, z0.to(device), _to(c, device)) for part, _ in gathered for i, z0, c in part]
    stopped = any(flag for _, flag in gathered)
    return assemble(blocks, generator, stopped, dataset,
                    {"beta": beta, "prior": prior, "critic_sign": critic_sign, "seconds": seconds, "world_size": world})
