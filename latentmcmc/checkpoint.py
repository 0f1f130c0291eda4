"""One safe on-disk format for trained models.

A checkpoint is a ``torch.save`` of plain data only (dicts, lists, strings, numbers, tensors): a
format tag and version, the JSON-like config that rebuilds the networks, their state dicts, the
optimisers' states, the training step, the random generator's state and the loss history.  It is
read with ``torch.load(weights_only=True)``, which refuses anything that would run code, and written
atomically (a temporary file beside the target, then a rename), so a crash never leaves a half file
under the checkpoint's name.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_path

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_models", "FORMAT", "VERSION"]

FORMAT = "latentmcmc-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is missing, not a latentmcmc checkpoint, corrupt, unsafe, or from an unknown version."""


def load_plain(source, map_location="cpu") -> Any:
    """``torch.load(source, weights_only=True)``: tensors and plain data only, nothing that could run code.

    torch's notice that a file was pickled with another protocol than its own (any file ``pickle`` wrote, such
    as one crafted to run code) is not passed on: the refusal that follows says what matters in one line.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(source, map_location=map_location, weights_only=True)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plain data and tensors) with the format tag and version, atomically."""
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing anything in it; raise :class:`CheckpointError` on any problem."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file (give the .pt file 'latentmcmc train' wrote)")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    _refuse_other_formats(path)
    try:
        data = load_plain(path, map_location)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain data (loading it could run "
            "code), so it is not a latentmcmc checkpoint"
        ) from err
    except Exception as err:  # torch raises many kinds (RuntimeError, EOFError, KeyError...) for non-checkpoints
        raise CheckpointError(
            f"{path} is not a latentmcmc checkpoint or is truncated/corrupt ({type(err).__name__}: {err})"
        ) from err
    if isinstance(data, dict) and data.get("format") == "latentmcmc-run-state":
        raise CheckpointError(f"{path} is a saved run state (refine --checkpoint-every), not a model checkpoint: rerun "
                              "the refine command that wrote it with --resume added")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a latentmcmc checkpoint (no '{FORMAT}' format tag)")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this latentmcmc reads versions 1..{VERSION}")
    for key in ("config", "models"):
        if key not in data:
            raise CheckpointError(f"{path} is incomplete: no '{key}'")
    return data


_HDF5 = b"\x89HDF\r\n\x1a\n"


def _refuse_other_formats(path: Path) -> None:
    """Name the files people pass by mistake (a saved run, a torch.export program, an npz or JSON file) and
    refuse any other file that torch.save did not write."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5:
        raise CheckpointError(f"{path} is a saved run (NetCDF), not a checkpoint: read it with 'latentmcmc diagnose "
                              f"{path}' or Chains.load")
    if head[:2] == b"PK":
        import zipfile

        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            return
        if any(n.endswith(("archive_format", "serialized_exported_program.json")) for n in names):
            raise CheckpointError(f"{path} is a torch.export program, not a latentmcmc checkpoint: pass it as "
                                  "--generator or --critic (with --latent-shape)")
        if names and all(n.endswith(".npy") for n in names):
            raise CheckpointError(f"{path} is a NumPy archive (such as a refinement's samples.npz), not a checkpoint")
    if head.lstrip()[:1] in (b"{", b"["):
        raise CheckpointError(f"{path} is a JSON file (such as a refinement's metrics.json), not a checkpoint")
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip (or, before 1.6, a pickle)
        raise CheckpointError(f"{path} is not a latentmcmc checkpoint: not a file torch.save wrote "
                              "(give the .pt file 'latentmcmc train' wrote)")


def load_models(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """``(generator, critic, config)`` from a training checkpoint, in eval mode on ``device``.

    ``LatentEnergy(*load_models("ckpt.pt")[:2])`` is then the latent target of the trained model.
    """
    from .training.build import build_networks

    data = load_checkpoint(path, map_location=device)
    config = data["config"]
    try:
        nets = build_networks(config)
        for name in ("generator", "critic"):
            nets[name].load_state_dict(data["models"][name])
    except (KeyError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path}: the networks do not match the checkpoint's config ({err})") from err
    generator, critic = nets["generator"].to(device).eval(), nets["critic"].to(device).eval()
    return generator, critic, config
