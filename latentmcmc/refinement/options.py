"""The typed options of a refinement run (what ``refine``, ``run_blocks``, torchrun sharding and the CLI pass)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..samplers.registry import SAMPLERS, SamplerOptions

__all__ = ["RefineOptions"]

_RENAMED = {"chains": "num_chains"}  # latentmcmc 0.1 keyword -> field


@dataclass(frozen=True)
class RefineOptions:
    r"""Everything that defines a refinement besides the models and the data set.

    The target is ``E(z) = beta U(G(z)) + 0.5|z|^2`` with ``U`` read from the critic as ``critic_output``
    says (energy, logit or probability; ``critic_sign=-1`` is 0.1's "logit"; no prior term when
    ``prior`` is False); ``num_chains`` chains start from ``z0 ~ N(0, I)`` drawn from ``seed`` and run
    ``warmup`` then ``steps`` steps of ``sampler`` with ``sampler_options`` (eps, schedule, compile).
    ``block_size``/``record_blocks`` cut the chains into blocks (see :func:`~latentmcmc.refinement.refine`).
    ``record="last"`` keeps only the final states (no ESS or R-hat); ``data_shape`` views the
    generator's flat outputs as samples of that shape (figures, metrics).  ``track_every=k`` measures
    the quality of ``track_chains`` chains every ``k`` steps; ``keep="best"`` returns the states at the
    best tracked step of ``track_metric``.  ``resample`` replaces an annealed sampler's final states by
    an importance resample under its AIS weights.  ``fuse`` runs blocks of steps as one compiled call
    (:mod:`latentmcmc.samplers.fused`; ``"auto"``: when the run is big enough to repay compiling).
    ``superchains=K``: the chains form ``K`` superchains of ``num_chains / K`` chains that share their
    starting point, and the report adds nested R-hat (Margossian et al. 2024).  ``warmup="auto"`` adapts
    until eps settles (at most ``max_warmup`` steps); ``until_rhat``/``min_ess`` end the recorded phase
    once R-hat / bulk ESS reach them, ``steps`` being the cap (:class:`~latentmcmc.samplers.Until`).
    """

    num_chains: int = 1000
    sampler: str = "mala"
    sampler_options: SamplerOptions = field(default_factory=SamplerOptions)
    steps: int = 500
    warmup: int | str = 500
    adapt: bool = True
    max_warmup: int = 1000
    until_rhat: float | None = None
    min_ess: float | None = None
    monitor_every: int = 0
    thin: int = 1
    seed: int = 0
    beta: float = 1.0
    prior: bool = True
    critic_sign: float = 1.0
    critic_output: str | None = None
    block_size: int | None = None
    record_blocks: int | None = None
    superchains: int | None = None
    keep_warmup: bool = False
    record: str = "full"
    data_shape: tuple[int, ...] | None = None
    track_every: int = 0
    track_chains: int = 1000
    track_metric: str | None = None
    keep: str = "last"
    resample: bool = False
    fuse: bool | int | str = "auto"
    stream: int | None = None
    progress: bool | None = None
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        from ..samplers.fused import resolve_fuse

        resolve_fuse(self.fuse)  # a ValueError naming a bad value
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.warmup != "auto":
            if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
                raise ValueError(f"warmup must be an integer >= 0 or 'auto', got {self.warmup!r}")
        if self.until_rhat is not None or self.min_ess is not None:
            self.until  # validates the rules
        for name, minimum in (("num_chains", 1), ("steps", 1), ("thin", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("block_size", "record_blocks", "stream", "superchains"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (or None), got {value!r}")
        if self.superchains is not None:
            if self.superchains < 2 or self.num_chains % self.superchains:
                raise ValueError(f"superchains={self.superchains} must be >= 2 and divide num_chains={self.num_chains}")
            size = self.num_chains // self.superchains
            if self.block_size is not None and self.block_size < self.num_chains and self.block_size % size:
                raise ValueError(f"block_size={self.block_size} must be a multiple of the superchain size {size} "
                                 f"(num_chains / superchains)")
        if self.record not in ("full", "last"):
            raise ValueError(f"record must be 'full' or 'last', got {self.record!r}")
        if self.keep not in ("last", "best"):
            raise ValueError(f"keep must be 'last' or 'best', got {self.keep!r}")
        for name in ("track_every",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0: no tracking), got {value!r}")
        if isinstance(self.track_chains, bool) or not isinstance(self.track_chains, int) or self.track_chains < 2:
            raise ValueError(f"track_chains must be an integer >= 2, got {self.track_chains!r}")
        if self.keep == "best" and not self.track_every:
            raise ValueError("keep='best' needs track_every (the best tracked step)")
        if self.track_metric is not None:
            from ..feature_metrics import METRIC_DIRECTIONS

            if self.track_metric not in METRIC_DIRECTIONS:
                raise ValueError(f"unknown track_metric {self.track_metric!r}; choose one of {', '.join(METRIC_DIRECTIONS)}")
        if self.resample and not SAMPLERS[self.sampler].anneals:
            raise ValueError(f"resample needs an annealed sampler (AIS weights); {self.sampler} has none")
        if self.data_shape is not None and (not self.data_shape or any(int(d) < 1 for d in self.data_shape)):
            raise ValueError(f"data_shape must be positive integers, got {self.data_shape!r}")
        if self.keep == "best" and self.blocked:
            raise ValueError("keep='best' keeps the states of one tracked step of every chain: it needs one block")
        if (self.warmup == "auto" or self.until_rhat is not None or self.min_ess is not None) and self.blocked:
            raise ValueError("warmup='auto' and stop rules (until_rhat, min_ess) end each run at its own step, so they "
                             "need one block: leave block_size unset (and run in one process)")
        if SAMPLERS[self.sampler].anneals and (self.warmup == "auto" or self.warmup < 1):
            raise ValueError(f"{self.sampler} anneals from the prior during warm-up: warmup must be >= 1")

    @property
    def blocked(self) -> bool:
        return self.block_size is not None and self.block_size < self.num_chains

    @property
    def until(self):
        """The stop rules as a :class:`~latentmcmc.samplers.Until`, or None."""
        from ..samplers.monitor import Until

        if self.until_rhat is None and self.min_ess is None:
            return None
        return Until(rhat=self.until_rhat, min_ess=self.min_ess, superchains=self.superchains)

    @property
    def has_warmup(self) -> bool:
        return self.warmup == "auto" or self.warmup > 0

    def fingerprint(self) -> dict[str, Any]:
        """The options that define the draws (not progress, device or streaming), as plain data."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name not in ("progress", "device", "stream", "sampler_options", "monitor_every")}
        plain["data_shape"] = None if self.data_shape is None else list(self.data_shape)
        plain.update({f"sampler.{k}": v for k, v in dataclasses.asdict(self.sampler_options).items()
                      if isinstance(v, (int, float, str, bool, type(None)))})
        return plain

    @property
    def superchain_size(self) -> int:
        """Chains per superchain (1 without superchains)."""
        return self.num_chains // self.superchains if self.superchains else 1

    @property
    def eps(self) -> float:
        return self.sampler_options.eps

    def replace(self, **changes: Any) -> "RefineOptions":
        """A copy with ``changes``; :class:`SamplerOptions` fields (eps, schedule, compile) may be given flat.

        ``chains=`` (latentmcmc 0.1) is accepted for ``num_chains`` with a DeprecationWarning.
        """
        for old, new in _RENAMED.items():
            if old in changes:
                warnings.warn(f"refine(..., {old}=) is now {new}=; {old}= will be removed in latentmcmc 0.3",
                              DeprecationWarning, stacklevel=3)
                changes[new] = changes.pop(old)
        sampler_fields = {f.name for f in dataclasses.fields(SamplerOptions)}
        own_fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - sampler_fields - own_fields
        if unknown:
            raise TypeError(f"unknown refinement option(s) {', '.join(sorted(unknown))}; valid: "
                            f"{', '.join(sorted(own_fields | sampler_fields))}")
        sampler_changes = {k: changes.pop(k) for k in list(changes) if k in sampler_fields}
        if sampler_changes:
            changes["sampler_options"] = dataclasses.replace(changes.get("sampler_options", self.sampler_options),
                                                             **sampler_changes)
        return dataclasses.replace(self, **changes)

    def resolved_device(self, generator: torch.nn.Module) -> torch.device:
        """``device``, or the device of the generator's parameters (CPU for a module without any)."""
        if self.device is not None:
            return torch.device(self.device)
        return next((p.device for p in generator.parameters()), torch.device("cpu"))
