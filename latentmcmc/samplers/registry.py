"""The named samplers: one table, from which ``refine``, the CLI's ``--sampler`` and its help derive.

Adding a sampler is one line here (its class, written in a module of its own, and a one-line
summary); the options a sampler takes are read off its constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

from ..energy import COMPILE_MODES
from .annealed import AnnealedLangevin, AnnealedMALA
from .base import Sampler
from .ex2mcmc import Ex2MCMC
from .flex2mcmc import FlEx2MCMC
from .hmc import HMC
from .isir import ISIR
from .langevin import Langevin
from .mala import MALA

__all__ = ["SamplerEntry", "SamplerOptions", "SAMPLERS", "make_sampler", "COMPILE_CHOICES"]

COMPILE_CHOICES = ("off",) + COMPILE_MODES
"""``--compile`` values: off, or one of :data:`~latentmcmc.energy.COMPILE_MODES`."""


@dataclass(frozen=True)
class SamplerOptions:
    """Constructor options of the named samplers; each sampler takes the ones its signature names.

    ``eps``: step size (noise variance of the Langevin proposal; HMC's leapfrog step size);
    ``schedule``: annealing schedule (:data:`~latentmcmc.samplers.schedules.SCHEDULES` or levels);
    ``compile``: False or a ``torch.compile`` mode; ``candidates``: i-SIR points per step (the current
    one included); ``local_steps``: MALA steps after each global move; ``proposal``: i-SIR's
    proposal (None: N(0, I)); ``flow``, ``flow_lr``: FlEx2MCMC's flow (None: zuko RealNVP) and its
    learning rate; ``leapfrog_steps``, ``chees``: HMC's trajectory (fixed steps, or ChEES-adapted).
    """

    eps: float = 0.01
    schedule: Any = "linear"
    compile: bool | str = False
    candidates: int = 10
    local_steps: int = 3
    proposal: Any = None
    flow: Any = None
    flow_lr: float = 1e-3
    leapfrog_steps: int = 10
    chees: bool = False


@dataclass(frozen=True)
class SamplerEntry:
    """A named sampler: its class and a one-line summary (for ``--help`` and the docs).

    Calling an entry constructs its class, and other attributes are the class's, so code written
    for the 0.1 table of classes (``SAMPLERS[name](energy, eps=...)``) keeps working.
    """

    cls: type[Sampler]
    summary: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # fixed constructor arguments of this entry

    @property
    def anneals(self) -> bool:
        """Whether the sampler anneals from the prior during warm-up (needs ``warmup >= 1``)."""
        return bool(self.cls.anneals)

    @property
    def options(self) -> tuple[str, ...]:
        """The :class:`SamplerOptions` fields this sampler's constructor takes."""
        params = inspect.signature(self.cls.__init__).parameters
        return tuple(f.name for f in dataclasses.fields(SamplerOptions) if f.name in params)

    def build(self, energy, options: SamplerOptions | None = None) -> Sampler:
        options = options or SamplerOptions()
        return self.cls(energy, **{name: getattr(options, name) for name in self.options}, **self.kwargs)

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


def make_sampler(name: str, energy, options: SamplerOptions | None = None) -> Sampler:
    """The sampler ``name`` of :data:`SAMPLERS` on ``energy`` with ``options``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name].build(energy, options)
