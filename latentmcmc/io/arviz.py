"""A run as ArviZ data (InferenceData on ArviZ 0.x, ``xarray.DataTree`` on ArviZ 1.x), saved and loaded.

Groups and variables (dims ``chain``, ``draw``, then ``z_dim_0``...):

* ``posterior``: ``z``, the latent draws;
* ``sample_stats``: ``lp = -energy``, ``acceptance_rate`` (the step's acceptance probability),
  ``eps`` (the step size in latentmcmc's convention, the Langevin noise variance; runs saved by
  latentmcmc 0.1 called it ``step_size``), ``diverging``;
* ``warmup_posterior`` / ``warmup_sample_stats``: the same for kept warm-up draws.

Per-chain totals (acceptance over every step, divergences, frozen chains, AIS log-weights) and the
run's settings are attributes of ``sample_stats``, so a saved run loads back into a
:class:`~latentmcmc.Chains` (:meth:`~latentmcmc.Chains.load`).  This module reads and writes only
plain fields; it does not import :mod:`latentmcmc.chains`, which imports it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._version import __version__
from ..atomic import atomic_path

__all__ = ["to_inference_data", "save_run", "read_run", "installed_arviz_kind"]

Kind = Literal["inference_data", "datatree"]
_PER_CHAIN = ("acceptance_rate", "divergences", "warmup_divergences", "frozen", "eps", "log_weights", "mh_accept_rate",
              "jump_rate")


def installed_arviz_kind() -> Kind:
    """``"inference_data"`` when ArviZ 0.x is installed, else ``"datatree"`` (ArviZ 1.x / arviz-base)."""
    try:
        import arviz

        major = int(str(arviz.__version__).split(".")[0])
    except ImportError:
        major = 1
    return "inference_data" if major < 1 else "datatree"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _groups(chains) -> dict[str, dict[str, np.ndarray]]:
    c, n = chains.energy.shape
    groups = {
        "posterior": {"z": _np(chains.draws)},
        "sample_stats": {
            "lp": _np(-chains.energy),
            "acceptance_rate": _np(chains.accept_prob),
            "eps": _np(chains.eps[:, None].expand(c, n)),
            "diverging": _np(chains.diverging),
        },
    }
    if chains.warmup_draws is not None and chains.warmup_draws.shape[1] > 0:
        groups["warmup_posterior"] = {"z": _np(chains.warmup_draws)}
        stats = {
            "lp": _np(-chains.warmup_energy),
            "acceptance_rate": _np(chains.warmup_accept_prob),
            "eps": _np(chains.warmup_eps),
        }
        if chains.warmup_diverging is not None:
            stats["diverging"] = _np(chains.warmup_diverging)
        groups["warmup_sample_stats"] = stats
    condition = chains.extra.get("condition")
    if condition is not None:  # a conditional run: each chain's condition, constant over its draws
        groups["constant_data"] = {"condition": _np(condition)}
    return groups


def _dims(groups: dict) -> dict[str, list[str]] | None:
    """The dimensions of the constant data (a condition per chain, then its own axes)."""
    data = groups.get("constant_data")
    if not data:
        return None
    ndim = data["condition"].ndim
    return {"condition": ["chain"] + [f"condition_dim_{i}" for i in range(ndim - 1)]}


def _attrs(chains) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "created_by": f"latentmcmc {__version__}",
        "sampler": chains.sampler,
        "warmup": chains.warmup,
        "steps": chains.steps,
        "thin": chains.thin,
        "energy_sign": "lp = -energy; energy = E(z), lower is more probable",
    }
    if chains.seed is not None:
        attrs["seed"] = int(chains.seed)
    for name in _PER_CHAIN:
        value = getattr(chains, name)
        if value is not None:
            arr = _np(value)
            attrs[f"chain_{name}"] = arr.astype(np.int64) if arr.dtype == bool else arr
    if chains.evaluations is not None:
        attrs.update(evaluations_forward=int(chains.evaluations.forward),
                     evaluations_backward=int(chains.evaluations.backward))
    if chains.log_weights is not None:
        with warnings.catch_warnings():  # the run's own log_normalizer() call is where the user hears about it
            warnings.simplefilter("ignore", RuntimeWarning)
            est = chains.log_normalizer()
        attrs.update(log_normalizer=est.estimate, log_normalizer_stderr=est.stderr, importance_ess=est.importance_ess,
                     pareto_k=est.pareto_k, log_normalizer_reliable=int(est.reliable))
    return attrs


def to_inference_data(chains, kind: Kind | None = None):
    """Convert a run for ArviZ: ``kind=None`` picks what the installed ArviZ expects.

    ``"inference_data"``: an ``arviz.InferenceData`` (ArviZ 0.x); ``"datatree"``: an
    ``xarray.DataTree`` made by ``arviz_base.from_dict`` (ArviZ 1.x).
    """
    kind = kind or installed_arviz_kind()
    groups = _groups(chains)
    attrs = _attrs(chains)
    if kind == "inference_data":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import arviz

        with warnings.catch_warnings():  # ArviZ guesses the layout from the sizes; ours is chains-first by contract
            warnings.filterwarnings("ignore", message="More chains")
            idata = arviz.from_dict(**groups, save_warmup="warmup_posterior" in groups, dims=_dims(groups))
        idata.sample_stats.attrs.update(attrs)
        return idata
    if kind == "datatree":
        import arviz_base

        with warnings.catch_warnings():  # arviz-base 1.x words the same guess differently
            warnings.filterwarnings("ignore", message="More chains")
            warnings.filterwarnings("ignore", message="Found chain dimension to be longer than draw")
            tree = arviz_base.from_dict(groups, save_warmup="warmup_posterior" in groups, dims=_dims(groups))
        tree["sample_stats"].attrs.update(attrs)
        return tree
    raise ValueError(f"kind must be 'inference_data' or 'datatree', got {kind!r}")


def save_run(chains, path: str | os.PathLike, kind: Kind | None = None) -> Path:
    """Write the run to NetCDF (h5netcdf; any suffix) or Zarr (suffix ``.zarr``), atomically.

    The file is written beside its destination and renamed into place, so a crash never leaves a
    half-written file under ``path``.
    """
    path = Path(path)
    data = to_inference_data(chains, kind)
    if path.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError as err:
            raise ValueError("saving to .zarr needs the zarr package (pip install zarr)") from err
        tree = data.to_datatree() if hasattr(data, "to_datatree") else data  # ArviZ 0.x cannot write zarr 3
        with atomic_path(path, directory=True) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata")  # zarr 3 notice; we read it back
            tree.to_zarr(tmp)
        return path
    # NetCDF is built in memory and then written with plain file I/O: a write that fails inside HDF5 (a full
    # disk, a file-size limit) left h5py's objects in a state that crashed the process at exit
    buffer = io.BytesIO()
    (data.to_datatree() if hasattr(data, "to_datatree") else data).to_netcdf(buffer, engine="h5netcdf")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    return path


def _tensor(ds, name: str, device, dtype=None) -> torch.Tensor | None:
    if ds is None or name not in ds:
        return None
    t = torch.as_tensor(np.asarray(ds[name].values))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def _step_size(ds, device) -> torch.Tensor | None:
    """The per-draw step size: ``eps`` (latentmcmc >= 0.2) or ``step_size`` (0.1 files)."""
    return _tensor(ds, "eps", device) if ds is not None and "eps" in ds else _tensor(ds, "step_size", device)


def read_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The fields of a :class:`~latentmcmc.Chains` from a run written by :func:`save_run` (either ArviZ flavour).

    ``Chains.load(path)`` is ``Chains(**read_run(path))``.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise ValueError(f"no saved run at {path}")
    try:
        if path.suffix == ".zarr":
            tree = xr.open_datatree(str(path), engine="zarr")
        else:
            tree = xr.open_datatree(str(path), engine="h5netcdf")
    except Exception as err:  # the file is not NetCDF/Zarr at all
        raise ValueError(f"{path} is not a saved latentmcmc run: {err}") from err
    groups = {name.strip("/"): tree[name].to_dataset() for name in tree.groups if name.strip("/")}
    post, stats = groups.get("posterior"), groups.get("sample_stats")
    if post is None or stats is None or "z" not in post or "lp" not in stats:
        raise ValueError(f"{path} is not a saved latentmcmc run (no posterior z / sample_stats lp)")
    attrs = dict(stats.attrs)
    draws = _tensor(post, "z", device)
    energy = -_tensor(stats, "lp", device)
    per_chain = {k: torch.as_tensor(np.asarray(attrs[f"chain_{k}"])).to(device) for k in _PER_CHAIN if f"chain_{k}" in attrs}
    c = draws.shape[0]
    zeros = torch.zeros(c, dtype=torch.int64, device=device)
    wpost, wstats = groups.get("warmup_posterior"), groups.get("warmup_sample_stats")
    fields = dict(
        draws=draws,
        energy=energy,
        accept_prob=_tensor(stats, "acceptance_rate", device),
        diverging=_tensor(stats, "diverging", device, torch.bool),
        eps=per_chain["eps"] if "eps" in per_chain else _step_size(stats, device)[:, -1],
        last=draws[:, -1],
        last_energy=energy[:, -1],
        acceptance_rate=per_chain.get("acceptance_rate", _tensor(stats, "acceptance_rate", device).mean(1)),
        divergences=per_chain.get("divergences", zeros),
        warmup_divergences=per_chain.get("warmup_divergences", zeros),
        frozen=per_chain.get("frozen", zeros).to(torch.bool),
        sampler=str(attrs.get("sampler", "")),
        seed=int(attrs["seed"]) if "seed" in attrs else None,
        warmup=int(attrs.get("warmup", 0)),
        steps=int(attrs.get("steps", draws.shape[1])),
        thin=int(attrs.get("thin", 1)),
        warmup_draws=_tensor(wpost, "z", device),
        warmup_energy=None if wstats is None else -_tensor(wstats, "lp", device),
        warmup_accept_prob=_tensor(wstats, "acceptance_rate", device),
        warmup_eps=_step_size(wstats, device),
        warmup_diverging=_tensor(wstats, "diverging", device, torch.bool),
        log_weights=per_chain.get("log_weights"),
        mh_accept_rate=per_chain.get("mh_accept_rate"),
        jump_rate=per_chain.get("jump_rate"),
        evaluations=((int(attrs["evaluations_forward"]), int(attrs["evaluations_backward"]))
                     if "evaluations_forward" in attrs else None),  # (forward, backward): Chains.load makes it Evaluations
    )
    constant = groups.get("constant_data")
    if constant is not None and "condition" in constant:
        fields["extra"] = {"condition": _tensor(constant, "condition", device)}
    tree.close()
    return fields
