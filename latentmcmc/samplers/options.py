"""Options, each declared once, in the layer that implements it.

An :class:`Option` carries everything about one option: its name, default, help text, the type the
command line parses it as (None: Python only, e.g. a proposal object), how the command line's text
becomes the value, and its validation.  A sampler lists the options it takes (``Sampler.options``,
declared next to its kernel); from those declarations derive the sampler's constructor signature and
its checks, :class:`~.registry.SamplerOptions` (the options of every named sampler as one value), the
``refine`` and ``compare`` command-line options, "does not apply to this sampler" warnings, and the
option table in the docs.  The run-level options of a refinement are declared the same way on the
fields of :class:`~latentmcmc.refinement.RefineOptions` (:func:`declare`).  A validation message always
starts with the option's name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["Option", "declare", "declared_fields", "integer", "optional", "positive_number", "boolean", "one_of",
           "EPS", "COMPILE", "check_eps"]


@dataclass(frozen=True)
class Option:
    """One sampler option: ``name``, ``default``, ``help``, the command-line type ``kind`` and ``check``.

    ``check(value)`` returns the value (normalised) or raises ``ValueError`` with a message that
    :meth:`validate` prefixes with the option's name.  ``kind`` None keeps the option off the command
    line (objects such as a proposal distribution or a flow).  ``choices`` (a callable returning the
    table's names) lists the values the command line accepts, for its help.
    """

    name: str
    default: Any
    help: str
    kind: type | None = None
    check: Callable[[Any], Any] | None = None
    choices: Callable[[], Any] | None = None
    parse: Callable[[Any], Any] | None = None  # the command line's value -> the option's value (None: as it is)
    cli_default: Any = None  # the command line's default, where it differs from ``default`` (None: the same)
    cli_flag: str | None = None  # the command line's spelling, where it differs from --<name>
    switch: bool = False  # a boolean shown as --<flag>/--no-<flag> (else a flag that only turns it on)

    def validate(self, value: Any, label: str | None = None) -> Any:
        """``value`` checked (and normalised), or a ValueError naming this option (as ``label``, e.g. its flag)."""
        if self.check is None:
            return value
        try:
            return self.check(value)
        except ValueError as err:
            raise ValueError(self.message(str(err), label)) from None

    def message(self, text: str, label: str | None = None) -> str:
        """A check's message ("must be ...") as a sentence about this option, called ``label`` (default its name);
        a message of another form is prefixed by the label when that is a flag (``--sampler: unknown sampler``)."""
        if text.startswith(self.name + " "):
            text = text[len(self.name) + 1:]
        if text.startswith(("must", "is ")):
            return f"{label or self.name} {text}"
        return f"{label}: {text}" if label and label.startswith("--") else text

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--leapfrog-steps``."""
        return self.cli_flag or "--" + self.name.replace("_", "-")

    @property
    def command_line_default(self) -> Any:
        return self.default if self.cli_default is None else self.cli_default


def declare(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field declared as an :class:`Option` (its name and default are the field's).

    ``spec``: the other :class:`Option` fields (``kind``, ``check``, ``choices``, ``parse``, ...).
    """
    factory = spec.pop("default_factory", None)
    metadata = {"option": dict(help=help, **spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_fields(cls: type) -> dict[str, Option]:
    """The :func:`declare` d fields of dataclass ``cls`` as :class:`Option` s, by name, in field order."""
    found = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("option")
        if spec is not None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            found[f.name] = Option(f.name, default, **spec)
    return found


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A check that also accepts None."""
    def checked(value: Any) -> Any:
        return None if value is None else check(value)

    return checked


def one_of(table: Callable[[], Any]) -> Callable[[Any], Any]:
    """A check: one of the names of ``table()`` (a dict or tuple of choices)."""
    def check(value: Any) -> Any:
        names = table()
        if value not in names:
            raise ValueError(f"must be one of {', '.join(repr(n) for n in names)}, got {value!r}")
        return value

    return check


def integer(minimum: int, why: str = "") -> Callable[[Any], int]:
    """A check: an integer (not a bool) ``>= minimum``."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}{why}, got {value!r}")
        return value

    return check


def positive_number(value: Any) -> float:
    """A check: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return float(value)


def boolean(value: Any) -> bool:
    """A check: True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def check_eps(eps: Any) -> Tensor:
    """A check: a positive finite number or a ``(chains,)`` tensor of them, returned as a detached tensor."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, Tensor)):
        raise ValueError(f"must be a positive number or a (chains,) tensor, got {type(eps).__name__}")
    t = torch.as_tensor(eps).detach()
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() > 1:
        raise ValueError(f"must be a scalar or have shape (chains,), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(f"must be finite and > 0, got {eps}")
    return t


def _check_compile(value: Any) -> bool | str:
    from ..energy import COMPILE_MODES

    if value is False or value is True or value in COMPILE_MODES:
        return value
    raise ValueError(f"must be one of off, {', '.join(COMPILE_MODES)} (in Python also True or False), got {value!r}")


def _compile_choices() -> tuple[str, ...]:
    from ..energy import COMPILE_MODES

    return ("off",) + COMPILE_MODES


EPS = Option("eps", 0.01, "Step size: the noise variance of z' = z - (eps/2) grad E + sqrt(eps) xi (hmc: the leapfrog "
             "step size); the starting value when adapting (a scalar is shared by all chains; in Python a (chains,) "
             "tensor is one per chain).", float, check_eps)
COMPILE = Option("compile", False, "Compile the energy's forward and backward with torch.compile (in Python True or "
                 "a mode; reduce-overhead: CUDA graphs); the same noise and accept decisions as eager.", str,
                 _check_compile, choices=_compile_choices,
                 parse=lambda text: False if text == "off" else text, cli_default="off")
