"""The typed options of a refinement run (what ``refine``, ``run_blocks``, torchrun sharding and the CLI pass).

Each field that the command line exposes is declared once here with :func:`~latentmcmc.samplers.options.declare`
(help text, command-line type and spelling, parsing, validation); ``latentmcmc refine`` and ``compare``
build their options from these declarations and from the samplers' own (:mod:`latentmcmc.samplers.options`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..critics import CRITIC_OUTPUTS
from ..energy import check_beta, resolve_critic_output
from ..feature_metrics import METRIC_DIRECTIONS
from ..priors import check_prior, prior_name, prior_spellings
from ..samplers.fused import parse_fuse, resolve_fuse
from ..samplers.options import (
    boolean,
    declare,
    declared_fields,
    integer,
    one_of,
    optional,
)
from ..samplers.recording import RECORD_CHOICES
from ..samplers.registry import (
    SAMPLERS,
    SamplerOptions,
    declared_options,
    ignored_options,
)
from .tracking import KEEP_CHOICES

__all__ = ["RefineOptions", "parse_shape", "REFINE_OPTIONS"]

_RENAMED = {"chains": "num_chains"}  # latentmcmc 0.1 keyword -> field


def parse_shape(text: str | tuple) -> tuple[int, ...]:
    """``"128"`` or ``"4,4,8"`` (also ``4x4x8``) -> a tuple of positive ints; a tuple passes through."""
    if not isinstance(text, str):
        return tuple(text)
    try:
        shape = tuple(int(p) for p in text.strip().replace("x", ",").split(","))  # an empty part is an error
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{text!r} is not a list of positive integers such as 128 or 4,4,8")
    return shape


def _parse_warmup(text: str | int) -> int | str:
    if text == "auto" or not isinstance(text, str):
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be a number of steps or 'auto', got {text!r}") from None


def _check_warmup(value: Any) -> Any:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"must be an integer >= 0 or 'auto', got {value!r}")
    return value


def _above_one(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 1.0 and math.isfinite(value)):
        raise ValueError(f"must be a finite number > 1 (such as 1.01), got {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return float(value)


def _check_shape(value: Any) -> Any:
    if value is not None and (not value or any(isinstance(d, bool) or int(d) != d or int(d) < 1 for d in value)):
        raise ValueError(f"must be positive integers, got {value!r}")
    return None if value is None else tuple(int(d) for d in value)


def _check_sign(value: Any) -> float:
    if value not in (1, -1):
        raise ValueError(f"must be +1 (the critic outputs an energy) or -1 (a realness logit), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RefineOptions:
    r"""Everything that defines a refinement besides the models and the data set.

    The target is ``E(z) = beta U(G(z)) + 0.5|z|^2`` with ``U`` read from the critic as ``critic_output``
    says (energy, logit or probability; ``critic_sign=-1`` is 0.1's "logit"; no prior term when
    ``prior`` is False); ``num_chains`` chains start from ``z0 ~ N(0, I)`` drawn from ``seed`` and run
    ``warmup`` then ``steps`` steps of ``sampler`` with ``sampler_options`` (eps, schedule, compile, and
    whatever the sampler declares).  ``block_size``/``record_blocks`` cut the chains into blocks (see
    :func:`~latentmcmc.refinement.refine`).  ``record="last"`` keeps only the final states (no ESS or
    R-hat); ``data_shape`` views the generator's flat outputs as samples of that shape (figures,
    metrics).  ``track_every=k`` measures the quality of ``track_chains`` chains every ``k`` steps;
    ``keep="best"`` returns the states at the best tracked step of ``track_metric``.  ``resample``
    replaces an annealed sampler's final states by an importance resample under its AIS weights.
    ``fuse`` runs blocks of steps as one compiled call (:mod:`latentmcmc.samplers.fused`; ``"auto"``: when
    the run is big enough to repay compiling).  ``superchains=K``: the chains form ``K`` superchains of
    ``num_chains / K`` chains that share their starting point, and the report adds nested R-hat
    (Margossian et al. 2024).  ``warmup="auto"`` adapts until eps settles (at most ``max_warmup``
    steps); ``until_rhat``/``min_ess`` end the recorded phase once the online R-hat / ESS reach them, checked
    every ``monitor_every`` recorded steps (50 when 0), ``steps`` being the cap
    (:class:`~latentmcmc.samplers.Until`).  Each field's help text is its declaration.
    """

    num_chains: int = declare(1000, "Number of chains (each starts from its own z ~ N(0, I)).", kind=int,
                              check=integer(1), cli_flag="--chains")
    sampler: str = declare("mala", "The sampler.", kind=str, choices=lambda: SAMPLERS,
                           check=lambda name: _check_sampler(name))
    sampler_options: SamplerOptions = field(default_factory=SamplerOptions)
    steps: int = declare(500, "Recorded steps per chain after warm-up (the cap with --until-rhat/--min-ess).", kind=int,
                         check=integer(1))
    warmup: int | str = declare(500, "Warm-up steps (step-size adaptation; annealing for annealed samplers), or "
                                "'auto': adapt until eps and the acceptance settle (at most --max-warmup).", kind=str,
                                parse=_parse_warmup, check=_check_warmup)
    adapt: bool = declare(True, "Adapt eps by dual averaging during warm-up.", kind=bool, check=boolean, switch=True)
    max_warmup: int = declare(1000, "Cap of --warmup auto.", kind=int, check=integer(100))
    until_rhat: float | None = declare(None, "Stop the recorded steps once the online split R-hat of the energy and the "
                                       "first 16 coordinates (of up to 256 chains) is at most this (e.g. 1.01)  "
                                       "\\[default: no stop rule]", kind=float, check=optional(_above_one))
    min_ess: float | None = declare(None, "Stop the recorded steps once the online ESS of their mean is at least this "
                                    "(with --until-rhat: both)  \\[default: no stop rule]", kind=float,
                                    check=optional(_positive))
    monitor_every: int = declare(0, "Online R-hat and ESS every this many recorded steps, in the progress bar and "
                                 "metrics.json (online_rhat, online_ess), and the stop rules' checks (0: off; with a "
                                 "stop rule, its checks every 50, shown too).", kind=int,
                                 check=integer(0), cli_default=50)
    thin: int = declare(1, "Keep every thin-th draw.", kind=int, check=integer(1))
    seed: int = declare(0, "Seed of the starting points and of the sampler.", kind=int, check=integer(0))
    beta: float = declare(1.0, "Inverse temperature on the critic: E(z) = beta U(G(z)) + 0.5|z|^2.", kind=float,
                          check=check_beta)
    prior: Any = declare(True, "The latent prior p(z) of the generator, whose energy is E's prior term: "
                         f"{prior_spellings()}, or none (no prior term: the target can be improper); in Python True "
                         "(normal), False (none) or a torch.distributions.Distribution  \\[default: normal]",
                         kind=str, check=check_prior, parse=check_prior)
    critic_sign: float = declare(1.0, "0.1's spelling: -1 means --critic-output logit.", kind=float, check=_check_sign)
    critic_output: str | None = declare(None, "What the critic outputs  \\[default: energy]", kind=str,
                                        choices=lambda: CRITIC_OUTPUTS, check=optional(one_of(lambda: CRITIC_OUTPUTS)))
    block_size: int | None = declare(None, "Run the chains in blocks of this many, each seeded by (seed, block)  "
                                     "\\[default: one block; under torchrun chains / world size]", kind=int,
                                     check=optional(integer(1)))
    record_blocks: int | None = declare(None, "Record every draw of the first N blocks only (bounded memory; ESS/R-hat "
                                        "from them)  \\[default: all]", kind=int, check=optional(integer(1)))
    superchains: int | None = declare(None, "Group the chains into K superchains sharing their starting point and "
                                      "report nested R-hat (Margossian et al. 2024), the R-hat for many short chains  "
                                      "\\[default: none]", kind=int, check=optional(integer(2)))
    keep_warmup: bool = declare(False, "Also record the warm-up (shown in the figures).", kind=bool, check=boolean)
    record: str = declare("full", "What the run keeps.", kind=str, choices=lambda: RECORD_CHOICES,
                          check=one_of(lambda: RECORD_CHOICES))
    data_shape: tuple[int, ...] | None = declare(None, "View the generator's output as samples of this shape, e.g. "
                                                 "1,28,28 (figures and metrics)  \\[default: as output]", kind=str,
                                                 parse=parse_shape, check=_check_shape)
    track_every: int = declare(0, "Measure the quality of --track-chains chains every N steps (warm-up included): "
                               "quality.csv and quality.png (0: off).", kind=int, check=integer(0))
    track_chains: int = declare(1000, "Chains whose quality --track-every measures.", kind=int, check=integer(2))
    track_metric: str | None = declare(None, "The tracked metric that decides the best step  \\[default: fd, else kid, "
                                       "else hq_fraction]", kind=str, choices=lambda: METRIC_DIRECTIONS,
                                       check=optional(one_of(lambda: METRIC_DIRECTIONS)))
    keep: str = declare("last", "Which states are the output.", kind=str, choices=lambda: KEEP_CHOICES,
                        check=one_of(lambda: KEEP_CHOICES))
    resample: bool = declare(False, "Annealed samplers: output an importance resample of the final states under the AIS "
                             "weights.", kind=bool, check=boolean)
    fuse: bool | int | str = declare("auto", "Run blocks of steps as one compiled graph: auto (when the run is big "
                                     "enough to repay compiling: >= 400 steps and 20M chain-steps or 5e13 model FLOPs on "
                                     "a CPU, >= 20,000 steps on CUDA), on (blocks of 10), off, or a block length.", kind=str,
                                     parse=parse_fuse, check=lambda value: (resolve_fuse(value), value)[1])
    stream: int | None = declare(None, "Keep the recorded draws in host memory, copied from the GPU every N draws (GPU "
                                 "memory then holds N draws)  \\[default: on the device]", kind=int,
                                 check=optional(integer(1)), cli_flag="--stream-draws")
    progress: bool | None = None
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        clash = sorted(set(declared_options()) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise TypeError(f"sampler option(s) {', '.join(clash)} take the name of a refinement option; a sampler's "
                            "options need names of their own")
        for name, option in REFINE_OPTIONS.items():  # each field as its declaration says
            option.validate(getattr(self, name))
        object.__setattr__(self, "prior", check_prior(self.prior))  # one spelling per prior (True for normal)
        if not isinstance(self.sampler_options, SamplerOptions):
            raise ValueError(f"sampler_options must be a SamplerOptions, got {type(self.sampler_options).__name__}")
        resolve_critic_output(self.critic_sign, self.critic_output)  # the two spellings must agree
        if self.until_rhat is not None and self.num_chains < 2:
            raise ValueError(f"until_rhat needs num_chains >= 2 (R-hat compares chains), got num_chains={self.num_chains}")
        if self.until_rhat is not None or self.min_ess is not None:
            self.until  # validates the rules together
        if self.superchains is not None:
            if self.superchains < 2 or self.num_chains % self.superchains:
                raise ValueError(f"superchains={self.superchains} must be >= 2 and divide num_chains={self.num_chains}")
            size = self.num_chains // self.superchains
            if self.block_size is not None and self.block_size < self.num_chains and self.block_size % size:
                raise ValueError(f"block_size={self.block_size} must be a multiple of the superchain size {size} "
                                 f"(num_chains / superchains)")
        if self.keep == "best" and not self.track_every:
            raise ValueError("keep='best' keeps the states at the best tracked step: give track_every")
        if self.resample and not SAMPLERS[self.sampler].anneals:
            raise ValueError(f"resample needs an annealed sampler (AIS weights); {self.sampler} has none")
        if self.keep == "best" and self.blocked:
            raise ValueError("keep='best' keeps the states of one tracked step of every chain: it needs one block")
        own_end = [what for what, given in (("warmup='auto'", self.warmup == "auto"),
                                             ("until_rhat", self.until_rhat is not None),
                                             ("min_ess", self.min_ess is not None)) if given]
        if own_end and self.blocked:
            raise ValueError(f"{' and '.join(own_end)} end{'s' if len(own_end) == 1 else ''} each run at its own step, "
                             "so a run needs one block: leave block_size unset (and run in one process)")
        SAMPLERS[self.sampler].cls.check_warmup(self.warmup, self.sampler)

    def ignored_sampler_options(self) -> list[str]:
        """The sampler options set explicitly that the chosen sampler does not take (they have no effect)."""
        return ignored_options(self.sampler, self.sampler_options.given)

    @property
    def blocked(self) -> bool:
        return self.block_size is not None and self.block_size < self.num_chains

    @property
    def until(self):
        """The stop rules as a :class:`~latentmcmc.samplers.Until`, or None."""
        from ..samplers.monitor import Until

        if self.until_rhat is None and self.min_ess is None:
            return None
        every = {"check_every": self.monitor_every} if self.monitor_every else {}  # else Until's own (50)
        return Until(rhat=self.until_rhat, min_ess=self.min_ess, superchains=self.superchains, **every)

    @property
    def has_warmup(self) -> bool:
        return self.warmup == "auto" or self.warmup > 0

    def fingerprint(self) -> dict[str, Any]:
        """The options that define the draws (not progress, device or streaming), as plain data."""
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name not in ("progress", "device", "stream", "sampler_options", "monitor_every")}
        plain["data_shape"] = None if self.data_shape is None else list(self.data_shape)
        if not isinstance(self.prior, bool):
            plain["prior"] = prior_name(self.prior)
        plain.update({f"sampler.{k}": v for k, v in self.sampler_options.for_sampler(self.sampler).items()
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
        """A copy with ``changes``; the sampler options (eps, schedule, compile, ...) may be given flat.

        ``chains=`` (latentmcmc 0.1) is accepted for ``num_chains`` with a DeprecationWarning.
        """
        for old, new in _RENAMED.items():
            if old in changes:
                warnings.warn(f"refine(..., {old}=) is now {new}=; {old}= will be removed in latentmcmc 0.3",
                              DeprecationWarning, stacklevel=3)
                changes[new] = changes.pop(old)
        sampler_fields = set(declared_options())
        own_fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - sampler_fields - own_fields
        if unknown:
            raise TypeError(f"unknown refinement option(s) {', '.join(sorted(unknown))}; valid: "
                            f"{', '.join(sorted(own_fields | sampler_fields))}")
        sampler_changes = {k: changes.pop(k) for k in list(changes) if k in sampler_fields}
        if sampler_changes:
            changes["sampler_options"] = changes.get("sampler_options", self.sampler_options).replace(**sampler_changes)
        return dataclasses.replace(self, **changes)

    def resolved_device(self, generator: torch.nn.Module) -> torch.device:
        """``device``, or the device of the generator's parameters (CPU for a module without any)."""
        if self.device is not None:
            return torch.device(self.device)
        return next((p.device for p in generator.parameters()), torch.device("cpu"))


def _check_sampler(name: Any) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return name


REFINE_OPTIONS = declared_fields(RefineOptions)
"""The declared fields of :class:`RefineOptions` (name -> :class:`~latentmcmc.samplers.options.Option`)."""
