"""The named samplers: one table, from which ``refine``, ``compare``, the CLI's ``--sampler`` and its help derive.

Adding a sampler is one line here (its class, written in a module of its own, and a one-line
summary).  The options a sampler takes are the :class:`~.options.Option` declarations its class lists;
:class:`SamplerOptions` holds values for the options of every named sampler, and the command line's
sampler options are built from the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..energy import COMPILE_MODES
from .annealed import AnnealedLangevin, AnnealedMALA
from .base import Sampler
from .ex2mcmc import Ex2MCMC
from .flex2mcmc import FlEx2MCMC
from .hmc import HMC
from .isir import ISIR
from .langevin import Langevin
from .mala import MALA
from .options import Option

__all__ = ["SamplerEntry", "SamplerOptions", "SAMPLERS", "make_sampler", "COMPILE_CHOICES", "declared_options",
           "ignored_options"]

COMPILE_CHOICES = ("off",) + COMPILE_MODES
"""``--compile`` values: off, or one of :data:`~latentmcmc.energy.COMPILE_MODES`."""


@dataclass(frozen=True)
class SamplerEntry:
    """A named sampler: its class and a one-line summary (for ``--help`` and the docs).

    Calling an entry constructs its class, and other attributes are the class's, so code written
    for the 0.1 table of classes (``SAMPLERS[name](energy, eps=...)``) keeps working.
    """

    cls: type[Sampler]
    summary: str

    @property
    def anneals(self) -> bool:
        """Whether the sampler anneals from the prior during warm-up (needs ``warmup >= 1``)."""
        return bool(self.cls.anneals)

    @property
    def options(self) -> tuple[str, ...]:
        """The names of the options this sampler's constructor takes (its declared :class:`~.options.Option` s)."""
        return self.cls.option_names()

    def build(self, energy, options: "SamplerOptions | None" = None) -> Sampler:
        options = options or SamplerOptions()
        return self.cls(energy, **{name: getattr(options, name) for name in self.options})

    def __call__(self, *args, **kwargs) -> Sampler:
        return self.cls(*args, **kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.cls, name)


SAMPLERS: dict[str, SamplerEntry] = {
    "langevin": SamplerEntry(Langevin, "unadjusted Langevin: every proposal taken, O(eps) bias"),
    "mala": SamplerEntry(MALA, "Metropolis-adjusted Langevin: exact for any eps"),
    "annealed-langevin": SamplerEntry(AnnealedLangevin, "Langevin annealed from the prior in warm-up, exact AIS weights"),
    "annealed-mala": SamplerEntry(AnnealedMALA, "MALA annealed from the prior in warm-up, AIS weights (log Z)"),
    "hmc": SamplerEntry(HMC, "Hamiltonian Monte Carlo, eps = leapfrog step size (--leapfrog-steps, --chees)"),
    "isir": SamplerEntry(ISIR, "i-SIR: global jumps between modes with prior proposals, no gradient (--candidates)"),
    "ex2mcmc": SamplerEntry(Ex2MCMC, "i-SIR jumps plus --local-steps MALA steps"),
    "flex2mcmc": SamplerEntry(FlEx2MCMC, "Ex2MCMC with a normalizing-flow proposal fitted in warm-up (needs zuko)"),
}


def declared_options() -> dict[str, Option]:
    """Every option of the samplers in :data:`SAMPLERS` (as the table is now), by name, in first-declared order.

    Two samplers may share an option only by listing the same declaration.
    """
    found: dict[str, Option] = {}
    for entry in SAMPLERS.values():
        for option in entry.cls.options:
            if found.setdefault(option.name, option) is not option:
                raise TypeError(f"option {option.name!r} is declared twice, differently (by {entry.cls.__name__} and "
                                "another sampler): share one declaration")
    return found


def takers(name: str) -> list[str]:
    """The names of the samplers that take option ``name``."""
    return [sampler for sampler, entry in SAMPLERS.items() if name in entry.options]


def ignored_options(sampler: str, given: Iterable[str]) -> list[str]:
    """The options among ``given`` that ``sampler`` does not take (to warn about: they would be ignored)."""
    takes = set(SAMPLERS[sampler].options)
    return [name for name in given if name not in takes]


class SamplerOptions:
    """Values of the named samplers' options: a frozen value; each sampler takes the options it declares.

    ``SamplerOptions(eps=0.02, leapfrog_steps=5)``: every name must be an option of some sampler in
    :data:`SAMPLERS` and every value passes that option's check (a ValueError naming it otherwise).
    Options not given read as their declared defaults (``options.candidates``); :attr:`given` lists
    those set explicitly.  Equal when the given values are equal.
    """

    def __init__(self, **values: Any) -> None:
        declared = declared_options()
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise TypeError(f"unknown sampler option(s) {', '.join(unknown)}; the samplers' options: "
                            f"{', '.join(declared)}")
        for name, value in values.items():
            declared[name].validate(value)
        object.__setattr__(self, "_values", dict(values))

    @property
    def given(self) -> tuple[str, ...]:
        """The options set explicitly (not left at their defaults)."""
        return tuple(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        declared = declared_options()
        if name in declared:
            return declared[name].default
        raise AttributeError(f"no sampler declares an option {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SamplerOptions is frozen: use .replace(...)")

    def replace(self, **changes: Any) -> "SamplerOptions":
        """A copy with ``changes``."""
        return SamplerOptions(**{**self._values, **changes})

    def for_sampler(self, name: str) -> dict[str, Any]:
        """The keyword arguments sampler ``name`` takes, given or default."""
        return {option: getattr(self, option) for option in SAMPLERS[name].options}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SamplerOptions) and _plain(self._values) == _plain(other._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._values.items())))

    def __repr__(self) -> str:
        return f"SamplerOptions({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in values.items()}


def make_sampler(name: str, energy, options: SamplerOptions | None = None) -> Sampler:
    """The sampler ``name`` of :data:`SAMPLERS` on ``energy`` with ``options``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name].build(energy, options)
