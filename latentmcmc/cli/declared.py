"""Command-line options built from declarations: the samplers' options and the declared fields of RefineOptions.

An :class:`~latentmcmc.samplers.options.Option` says everything the command line needs: flag, type, help,
choices, how the text becomes a value and how the value is checked.  :func:`option_parameter` turns one
into a typer option (default None, so that a value the user did not give is told apart from one given
equal to the default; the default is shown in the help), :func:`given_values` parses and checks what
was given (a bad value is one ``error:`` line naming the flag).  Commands built this way
(:func:`derived_command`) compute their parameters again each time the CLI runs, from the tables as
they are then: a sampler added to ``SAMPLERS`` brings its options to ``refine`` and ``compare``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import typer

from ..samplers.options import Option
from .common import CommandError

__all__ = ["option_parameter", "given_values", "derived_command", "refresh_commands", "parameter", "choices_text",
           "cli_flags"]

_DERIVED: list[tuple[Callable, Callable[[], list[inspect.Parameter]]]] = []


def choices_text(table: Any) -> str:
    """``a: summary; b: summary`` for a table whose entries have a summary (or are one), else ``a, b, c``."""
    if isinstance(table, dict):
        parts = [f"{name}: {entry if isinstance(entry, str) else entry.summary}" if isinstance(entry, str)
                 or hasattr(entry, "summary") else str(name) for name, entry in table.items()]
        return ("; " if any(":" in p for p in parts) else ", ").join(parts)
    return ", ".join(str(name) for name in table)


def _help(option: Option, takers: list[str] | None, others: list[str] | None) -> str:
    text = option.help.rstrip()
    if option.choices is not None:
        head, _, tail = text.partition("  \\[default:")  # the choices go before a default written by hand
        text = f"{head.rstrip('.')}: {choices_text(option.choices())}" + (f"  \\[default:{tail}" if tail else "")
    if takers is not None:
        text += (f" [{', '.join(takers)}]" if not others or len(takers) <= len(others)
                 else f" [all samplers but {', '.join(others)}]")
    if "[default:" not in text:
        default = option.command_line_default
        if option.kind is bool:
            if option.switch:
                text += f"  \\[default: {option.flag if default else '--no-' + option.flag[2:]}]"
        else:
            text += f"  \\[default: {default}]"
    return text


def option_parameter(option: Option, takers: list[str] | None = None, others: list[str] | None = None
                     ) -> inspect.Parameter:
    """A typer option for ``option`` (default None; the declared default shown in its help).

    ``takers``: the samplers that take it, named in the help when not all of them do (``others``: those
    that do not, named instead when they are fewer).
    """
    help_text = _help(option, takers, others)
    if option.kind is bool:
        names = (f"{option.flag}/--no-{option.flag[2:]}",) if option.switch else (option.flag,)
        info = typer.Option(None, *names, help=help_text, metavar="", show_default=False)
    else:
        info = typer.Option(None, option.flag, help=help_text, show_default=False)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                             annotation=Optional[option.kind])


def parameter(name: str, info: Any, annotation: Any) -> inspect.Parameter:
    """A command-line parameter declared by the command itself (a typer Option or Argument)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def given_values(values: dict[str, Any], options: dict[str, Option], defaults: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The values of ``options`` the user gave (parsed and checked), plus the command line's own defaults.

    A bad value raises a :class:`~.common.CommandError` naming the flag.  ``defaults`` overrides the
    command line's default of some options (e.g. ``compare`` runs 2,000 chains).
    """
    out: dict[str, Any] = {}
    for name, option in options.items():
        if name not in values:
            continue
        value = values[name]
        if value is None:
            default = (defaults or {}).get(name, option.cli_default)
            if default is None:
                continue
            value = default
        try:
            if option.parse is not None:
                value = option.parse(value)
            option.validate(value, option.flag)
        except ValueError as err:
            raise CommandError(option.message(str(err), option.flag)) from None
        out[name] = value
    return out


def derived_command(app: typer.Typer, name: str, parameters: Callable[[], list[inspect.Parameter]]):
    """Register ``fn(**values)`` as command ``name`` with the parameters ``parameters()`` (recomputed each run)."""
    def register(fn: Callable) -> Callable:
        fn.__signature__ = inspect.Signature(parameters())
        _DERIVED.append((fn, parameters))
        return app.command(name)(fn)

    return register


def refresh_commands() -> None:
    """Build every derived command's parameters again from the tables as they are now."""
    for fn, parameters in _DERIVED:
        fn.__signature__ = inspect.Signature(parameters())


def cli_flags() -> dict[str, str]:
    """Python option names that differ from their flags (``num_chains -> --chains``, ``leapfrog_steps ->
    --leapfrog-steps``), from every declaration, for messages of the library shown on the command line."""
    from ..refinement.options import REFINE_OPTIONS
    from ..samplers.registry import declared_options

    flags = {}
    for option in (*declared_options().values(), *REFINE_OPTIONS.values()):
        if option.kind is not None and ("_" in option.name or option.cli_flag):
            flags[option.name] = option.flag
    return flags
