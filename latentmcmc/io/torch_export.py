"""Load generators and critics trained elsewhere, saved as ``torch.export`` programs (``.pt2``).

``torch.export.save`` writes a zip archive: the program as JSON, most weights as raw bytes described
by JSON configs, and some payloads (example inputs, weights it chose to pickle, custom objects) as
pickles.  ``torch.export.load`` unpickles some of those with ``weights_only=False`` (or plain
``pickle.loads``), so a crafted archive could run code.  :func:`load_exported` reads the file once,
checks every pickled payload with ``torch.load(weights_only=True)`` itself and refuses custom-object
payloads, and only then deserialises the program from the same bytes: a file that would need
unrestricted unpickling is refused before anything in it runs.

Export the models with a dynamic batch dimension so that any number of chains can be run::

    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(G, (torch.randn(2, 128),), dynamic_shapes=({0: batch},)), "g.pt2")
    torch.export.save(torch.export.export(U, (G(torch.randn(2, 128)),), dynamic_shapes=({0: batch},)), "u.pt2")
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, load_plain
from ..critics import one_per_sample

__all__ = ["load_exported", "ExportedModule", "check_latent_shape", "first_line"]


def _pickled_entries(archive: zipfile.ZipFile, names: list[str], path: Path) -> list[str]:
    """Archive entries that ``torch.export.load`` would unpickle; refuse custom-object payloads outright."""
    entries = {n for n in names if n.endswith(".pt")}  # example inputs, legacy state dicts and constants
    for config_name in (n for n in names if n.endswith("_config.json") and "/data/" in f"/{n}"):
        folder = config_name.rsplit("/", 1)[0]
        try:
            config = json.loads(archive.read(config_name)).get("config", {})
        except (ValueError, AttributeError) as err:
            raise CheckpointError(f"{path}: {config_name} is not valid JSON ({err})") from err
        for fqn, meta in config.items():
            file_name = str(meta.get("path_name", ""))
            if file_name.startswith(("custom_obj", "opaque_obj")):
                raise CheckpointError(
                    f"{path} was refused: constant {fqn!r} is a custom object that can only be loaded by "
                    "unpickling (which could run code)"
                )
            if meta.get("use_pickle"):
                entries.add(f"{folder}/{file_name}")
    return sorted(entries)


class ExportedModule(nn.Module):
    """An exported program as a module: ``forward(x, *rest) = program(x, *rest)`` (a conditional model's
    condition is the second input), moved to one device.

    ``static_batch`` is the batch size the program was exported with when that dimension is not
    dynamic (``None`` when any batch size works).
    """

    def __init__(self, program: "torch.export.ExportedProgram", name: str, device: torch.device) -> None:
        super().__init__()
        self.name = name
        self.static_batch = _static_batch(program)
        self.sample_shape = _sample_shape(program)  # one input's shape, when fixed: a generator's latent shape
        self.inputs = len(program.graph_signature.user_inputs)  # 2 for a conditional model's (x, c)
        self.program = program.module().to(device)

    def with_program(self, module: nn.Module) -> "ExportedModule":
        """A copy running ``module`` instead (the same program with its graph edited, e.g. a Sigmoid removed)."""
        import copy

        twin = copy.copy(self)
        twin._modules = dict(self._modules)
        twin.program = module
        return twin

    def train(self, mode: bool = True) -> "ExportedModule":
        """No-op: an exported program has its train/eval behaviour fixed at export (export in eval mode)."""
        self.training = mode
        return self

    def forward(self, x: Tensor, *rest: Tensor) -> Tensor:
        if self.static_batch is not None and x.shape[0] != self.static_batch:
            raise ValueError(
                f"{self.name} was exported with a fixed batch size of {self.static_batch} and cannot run a batch of "
                f"{x.shape[0]}; export it with a dynamic batch dimension (dynamic_shapes={{0: torch.export.Dim('batch')}}):"
                f" latentmcmc evaluates batches of several sizes (a probe of 2, the chains, i-SIR's candidates), so "
                f"even --chains {self.static_batch} cannot run on it"
            )
        return self.program(x, *rest)


def _first_input_shape(program: "torch.export.ExportedProgram") -> tuple | None:
    """The shape of the program's first user input (dimensions are ints or symbols), or None when unknown."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = getattr(node.meta.get("val"), "shape", None)
            return tuple(shape) if shape is not None else None
    return None


def _static_batch(program: "torch.export.ExportedProgram") -> int | None:
    """The fixed leading dimension of the program's (single) user input, or None when it is symbolic."""
    shape = _first_input_shape(program)
    return int(shape[0]) if shape and isinstance(shape[0], int) else None


def _sample_shape(program: "torch.export.ExportedProgram") -> tuple[int, ...] | None:
    """The first input's shape after the batch dimension when every one is fixed (a generator's latent shape)."""
    shape = _first_input_shape(program)
    if not shape or not all(isinstance(d, int) for d in shape[1:]):
        return None
    return tuple(int(d) for d in shape[1:])


def latent_mismatch(generator: nn.Module, latent_shape: tuple[int, ...], err: Exception) -> str:
    """Why ``latent_shape`` does not fit ``generator``: the shape an exported generator takes when it is known."""
    takes = getattr(generator, "sample_shape", None)
    if takes is not None and tuple(takes) != tuple(latent_shape):
        return (f"latent shape {tuple(latent_shape)} does not fit the generator, which takes latents of shape "
                f"{takes} (--latent-shape {','.join(str(d) for d in takes)})")
    return f"latent shape {tuple(latent_shape)} does not fit the generator: {first_line(err)}"


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu", name: str | None = None) -> ExportedModule:
    """Load a ``torch.export.save`` program without running any pickled code; raise :class:`CheckpointError`."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise CheckpointError(f"no exported program at {path}")
    raw = path.read_bytes()
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path} is not a torch.export program (.pt2 archive): {err}") from err
    if not any(n.endswith(("archive_format", "serialized_exported_program.json")) for n in names):
        raise CheckpointError(f"{path} is a zip archive but not a torch.export program")
    for entry in _pickled_entries(archive, names, path):
        try:
            load_plain(io.BytesIO(archive.read(entry)))
        except Exception as err:
            raise CheckpointError(
                f"{path} was refused: {entry} holds objects other than tensors and plain data "
                "(loading it could run code)"
            ) from err
    try:
        program = torch.export.load(io.BytesIO(raw))
    except Exception as err:  # version skew, truncated JSON, unknown operators...
        raise CheckpointError(f"{path} could not be loaded as a torch.export program ({type(err).__name__}: {err})") from err
    return ExportedModule(program, name, torch.device(device))


def first_line(err: Exception) -> str:
    """The first line of an exception's message (a model's shape guard can run to many), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_latent_shape(generator: nn.Module, critic: nn.Module, latent_shape: tuple[int, ...],
                       device: str | torch.device = "cpu", chains: int = 2) -> tuple[int, ...]:
    """Run ``critic(generator(z))`` on a probe batch; return the data shape or raise a clear ValueError."""
    if not latent_shape or any(int(d) < 1 for d in latent_shape):
        raise ValueError(f"latent shape must be positive integers, got {tuple(latent_shape)}")
    z = torch.zeros(chains, *latent_shape, device=device)
    with torch.no_grad():
        try:
            x = generator(z)
        except Exception as err:
            raise ValueError(latent_mismatch(generator, latent_shape, err)) from err
        try:
            u = critic(x)
        except Exception as err:
            raise ValueError(f"the critic cannot read the generator's output of shape {tuple(x.shape)}: "
                             f"{first_line(err)}") from err
    if not one_per_sample(u.shape, chains):
        got = "(n, " + ", ".join(str(s) for s in u.shape[1:]) + ")" if u.dim() and u.shape[0] == chains else str(tuple(u.shape))
        raise ValueError(f"the critic returns {got} for a batch of n samples; expected one energy per sample: (n,), "
                         "(n, 1) or (n, 1, 1, 1)")
    return tuple(x.shape[1:])
