"""The ``torch.distributed`` process group of a torchrun job: joining it, asking about it, leaving it.

Shared by sharded refinement (:mod:`latentmcmc.distributed`) and DistributedDataParallel training.
Backends: NCCL when the work lives on CUDA (each rank on ``cuda:LOCAL_RANK``), Gloo on CPU.
"""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist

__all__ = ["world_from_env", "init_distributed", "active", "rank_and_world", "leave"]


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


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group of several processes."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def leave() -> None:
    """Wait for every rank, then tear the process group down (no-op without one).

    A rank that exits while the group's threads still run can abort ("terminate called without an
    active exception"), and torchrun then reports the whole job failed.
    """
    if dist.is_available() and dist.is_initialized():
        # DistributedDataParallel wrappers left in reference cycles (a finished Trainer's) must be freed
        # while the group lives: a reducer destroyed after it aborted a rank (SIGABRT) now and then
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
