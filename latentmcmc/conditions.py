r"""Conditions of class-conditional models: one per chain, from class ids or a file, checked against the model.

A conditional generator and critic take the condition as a second input, ``G(z, c)`` and ``D(x, c)``
(BigGAN, conditional StyleGAN2-ADA, cGANs with a projection discriminator); ``c`` has one row per
chain (class ids, or any tensor such as an embedding), fixed for the chain's run.  Refining every class
in one run is one conditional run: ``--classes 0,3,7`` gives chain ``i`` the class ``ids[i mod 3]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .critics import one_per_sample

__all__ = ["per_chain", "class_accuracy", "class_ids", "cycle_classes", "parse_classes", "read_conditions", "check_conditional"]


def per_chain(condition, num_chains: int, device: torch.device | str | None = None) -> Tensor | None:
    """``condition`` as a tensor of one row per chain on ``device`` (a ValueError naming what does not fit), or None."""
    if condition is None:
        return None
    c = torch.as_tensor(condition)
    if c.dim() < 1 or c.shape[0] != num_chains:
        raise ValueError(f"condition has {c.shape[0] if c.dim() else 0} rows for {num_chains} chains: give one row per "
                         "chain (class ids cycled over the chains: latentmcmc.conditions.cycle_classes)")
    return c.to(device) if device is not None else c


def parse_classes(text: str) -> list[int]:
    """``"0,3,7"`` (also ``0-9`` for a range) -> ``[0, 3, 7]``; a ValueError naming the part that is wrong."""
    ids: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        lo, dash, hi = (piece.strip() for piece in part.partition("-"))
        if not (lo.isdigit() and (not dash or hi.isdigit())):
            what = "an empty part" if not part else f"{part!r}"
            raise ValueError(f"--classes {text!r}: {what} is not a class id (>= 0) or a range such as 0-9")
        if dash and int(hi) < int(lo):
            raise ValueError(f"--classes {text!r}: the range {part!r} runs backwards; write {hi}-{lo}")
        ids.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return ids


def cover_classes(ids: list[int], num_chains: int) -> Tensor:
    """``cycle_classes`` after checking that every class gets a chain (a ValueError naming the ones left out)."""
    if num_chains < len(set(ids)):
        left = sorted(set(ids) - set(ids[:num_chains]))
        raise ValueError(f"--classes names {len(set(ids))} classes but there are {num_chains} chains: classes "
                         f"{', '.join(map(str, left[:5]))}{', ...' if len(left) > 5 else ''} would get none; "
                         "give --chains of at least the number of classes")
    return cycle_classes(ids, num_chains)


def cycle_classes(ids: list[int], num_chains: int) -> Tensor:
    """``(num_chains,)`` int64 class ids, ``ids`` repeated over the chains (chain ``i`` gets ``ids[i mod len(ids)]``)."""
    if not ids:
        raise ValueError("no class ids given")
    return torch.tensor(ids, dtype=torch.long).repeat(-(-num_chains // len(ids)))[:num_chains]


def read_conditions(path: str | Path, num_chains: int | None) -> Tensor:
    """One row per chain from a ``.npy`` file (or the one array of a ``.npz``), without pickles; ``num_chains``
    None: as many chains as rows."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--condition {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            names = list(data.keys())
            if len(names) != 1:
                raise ValueError(f"holds {len(names)} arrays ({', '.join(names)}); give one")
            data = data[names[0]]
    except ValueError as err:
        raise ValueError(f"--condition {path}: {err}") from None
    except OSError as err:
        raise ValueError(f"--condition {path}: not a NumPy .npy/.npz file ({err})") from None
    if data.ndim < 1 or (num_chains is not None and data.shape[0] != num_chains):
        rows = data.shape[0] if data.ndim else 0
        raise ValueError(f"--condition {path} has {rows} rows for {num_chains} chains: give one row per chain")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"--condition {path} holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(data))


def _largest_class(model: nn.Module, first: Tensor, c: Tensor) -> int | None:
    """The largest class id ``k`` in ``[0, max(c)]`` that ``model(first, k)`` accepts (a binary search: an embedding
    takes ``0..n-1``), or None when the conditions are not class ids or even 0 fails."""
    if c.dim() != 1 or c.dtype.is_floating_point or c.dtype == torch.bool:
        return None

    def takes(k: int) -> bool:
        try:
            model(first, torch.full((1,), k, dtype=c.dtype, device=c.device))
            return True
        except Exception:  # noqa: BLE001 - any failure means the class is out of its range
            return False

    low, high = 0, int(c.max())
    if not takes(low):
        return None
    while low < high:  # takes(low) holds; find the largest k that works
        mid = (low + high + 1) // 2
        low, high = (mid, high) if takes(mid) else (low, mid - 1)
    return low


@torch.no_grad()
def check_conditional(generator: nn.Module, critic: nn.Module, latent_shape: tuple[int, ...], condition: Tensor,
                      device: str | torch.device = "cpu") -> tuple[int, ...]:
    """Run ``D(G(z, c), c)`` on every distinct condition (up to 4,096); the data shape, or a ValueError that says why
    not (a generator or critic that takes no condition, a class id out of its range)."""
    from .io.torch_export import first_line

    c = torch.unique(condition, dim=0)[:4096].to(device)  # every distinct condition (a class out of range anywhere)
    z = torch.zeros(c.shape[0], *latent_shape, device=device)
    for name, model in (("generator", generator), ("critic", critic)):
        if getattr(model, "inputs", 2) < 2:  # an exported program says how many inputs it takes
            example = "G, (z, y)" if name == "generator" else "D, (x, y)"
            raise ValueError(f"the {name} takes one input, not a condition: a class-conditional model is exported with "
                             f"two, e.g. torch.export.export({example}, dynamic_shapes=({{0: batch}}, {{0: batch}}))")
    def call(name: str, model: nn.Module, first: Tensor) -> Tensor:
        try:
            return model(first, c)
        except IndexError as err:
            takes = _largest_class(model, first[:1], c)
            known = f"the {name} takes classes 0 to {takes}, " if takes is not None else ""
            raise ValueError(f"a condition is out of the {name}'s range ({first_line(err)}): {known}the conditions run "
                             f"from {c.min().item()} to {c.max().item()}; check them against the classes the model was "
                             "trained on") from err
        except Exception as err:  # noqa: BLE001 - the model's own message, on one line
            raise ValueError(f"the {name} fails on a condition as its second input ({name[0].upper()}"
                             f"({'z' if name == 'generator' else 'x'}, c) with c of shape {tuple(c.shape[1:])} per "
                             f"chain, dtype {str(c.dtype).removeprefix('torch.')}; class ids are integers): "
                             f"{first_line(err)}") from err

    x = call("generator", generator, z)
    out = call("critic", critic, x)
    if not one_per_sample(out.shape, c.shape[0]):
        raise ValueError(f"the critic returns shape {tuple(out.shape)} for {c.shape[0]} conditioned samples; expected "
                         "one energy per sample")
    return tuple(x.shape[1:])


def class_ids(condition: Tensor | None) -> Tensor | None:
    """``condition`` when it is one integer class id per chain, else None."""
    if condition is None or condition.dim() != 1 or condition.dtype.is_floating_point or condition.dtype == torch.bool:
        return None
    return condition


@torch.no_grad()
def class_accuracy(classifier: nn.Module, x: Tensor, labels: Tensor, batch: int = 4096) -> dict[str, dict]:
    """Per class ``k``: how many chains have it and the share of their samples ``x`` the classifier labels ``k``.

    ``{"3": {"chains": 200, "accuracy": 0.91}, ...}`` (class ids as strings, for JSON), classes in increasing order.
    """
    device = next((p.device for p in classifier.parameters()), x.device) if isinstance(classifier, nn.Module) \
        else x.device
    predicted = torch.cat([classifier(x[i:i + batch].to(device)).argmax(1).cpu() for i in range(0, x.shape[0], batch)])
    labels = labels.cpu()
    out = {}
    for k in torch.unique(labels).tolist():
        rows = labels == k
        out[str(k)] = {"chains": int(rows.sum()), "accuracy": float((predicted[rows] == k).double().mean())}
    return out
