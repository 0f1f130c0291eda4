"""Saving a run's complete state to a file, and continuing from it exactly.

A state file is a ``torch.save`` of plain data and tensors, written atomically (beside the target,
then renamed, so a process killed while writing leaves the previous state) and read with
``torch.load(weights_only=True)``.  It holds a *fingerprint* of what defines the run (sampler and its
options, settings, starting points, step size, seed); a state is only resumed by a run with the same
fingerprint, and the first difference is named otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_path
from ..checkpoint import load_plain

__all__ = ["FORMAT", "save_state", "load_state", "fingerprint", "check_fingerprint", "tensor_digest"]

FORMAT = "latentmcmc-run-state"
VERSION = 2  # 2: the run's kernel parameters are a value ("params"); 1 kept eps and kernel state apart


def tensor_digest(t: Tensor) -> str:
    """A short hash of a tensor's values, dtype and shape (to recognise the same starting points)."""
    data = t.detach().cpu()
    h = hashlib.sha256(str((tuple(data.shape), str(data.dtype))).encode())
    h.update(data.numpy().tobytes() if data.numel() else b"")  # in C order whatever the strides (one chain: stride 0)
    return h.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """An option's value as plain data for a fingerprint: numbers and strings as they are, tensors by digest,
    other objects (a proposal, a flow module) by their type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return f"tensor:{tensor_digest(value)}"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return f"{type(value).__module__}.{type(value).__qualname__}"


def fingerprint(sampler, settings, z0: Tensor, eps: Tensor, seed: int) -> dict[str, Any]:
    """What must be equal for a saved state to continue a run: the sampler and its options, the run's settings,
    starting points, step size and seed."""
    return {"sampler": type(sampler).__name__,
            "options": {name: _plain(value) for name, value in sampler.config.items() if name not in ("eps", "compile")},
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "progress"},
            "z0": tensor_digest(z0), "chains": int(z0.shape[0]), "eps": tensor_digest(eps), "seed": int(seed),
            "shared_eps": bool(sampler.shared_eps)}


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path) -> None:
    """Raise a ValueError naming the first thing that differs between the saved run and this one."""
    for key in current:
        if isinstance(current[key], dict):
            for name, value in current[key].items():
                old = saved.get(key, {}).get(name, "(absent)")
                if old != value:
                    name = name.removeprefix("sampler.")
                    raise ValueError(f"{path} was saved by a run with {name}={old!r}, not {value!r}: resume with the "
                                     "same arguments")
        elif saved.get(key) != current[key]:
            what = {"z0": "other starting points", "eps": "another step size", "seed": "another seed",
                    "source": "another model", "world_size": "another number of processes",
                    "condition": "other conditions"}.get(key, key)
            raise ValueError(f"{path} was saved by a run with {what} ({key}: {saved.get(key)!r} vs {current[key]!r}): "
                             "resume with the same arguments")


def save_state(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the format tag, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file (no code runs: ``weights_only=True``); a ValueError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no saved run state at {path}: nothing to resume (run once with a checkpoint first)")
    try:
        data = load_plain(path)
    except Exception as err:
        raise ValueError(f"{path} is not a latentmcmc run state, or is truncated or corrupt ({type(err).__name__}): "
                         "remove it to start the run again") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a latentmcmc run state")
    if data.get("version") != VERSION:
        raise ValueError(f"{path} has run-state version {data.get('version')!r}; this latentmcmc reads {VERSION} (a "
                         "state written by another latentmcmc version: finish the run with that version, or start again)")
    return data
