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

_DERIVED: list[tuple] = []


def choices_text(table: Any, limit: int = 240) -> str:
    """``a: summary; b: summary`` for a table whose entries have a summary (or are one), when that fits in about
    ``limit`` characters; else the names, ``a, b, c``."""
    names = ", ".join(str(name) for name in table)
    if isinstance(table, dict):
        parts = [f"{name}: {entry if isinstance(entry, str) else entry.summary}" for name, entry in table.items()
                 if isinstance(entry, str) or hasattr(entry, "summary")]
        if len(parts) == len(table) and sum(map(len, parts)) <= limit:
            return "; ".join(parts)
    return names


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
        except ValueError as err:
            raise CommandError(option.message(str(err), option.flag)) from None
        try:
            option.validate(value, option.flag)
        except ValueError as err:  # validate names the flag itself
            raise CommandError(str(err)) from None
        out[name] = value
    return out


def _signature(command: str, parameters: list[inspect.Parameter]) -> inspect.Signature:
    """The command's signature; a CommandError when two declarations (a sampler's option and one of the command's)
    take the same name."""
    seen: dict[str, int] = {}
    for p in parameters:
        seen[p.name] = seen.get(p.name, 0) + 1
    twice = sorted(name for name, count in seen.items() if count > 1)
    if twice:
        raise CommandError(f"{command}: the option name(s) {', '.join(twice)} are declared twice; a sampler's option "
                           "may not take the name of another option of the command (rename the sampler's)")
    return inspect.Signature(parameters)


def derived_command(app: typer.Typer, name: str, parameters: Callable[[], list[inspect.Parameter]],
                    epilog: Callable[[], str] | None = None):
    """Register ``fn(**values)`` as command ``name`` with the parameters ``parameters()`` and, after its
    docstring, the paragraph ``epilog()`` (both recomputed each run)."""
    def register(fn: Callable) -> Callable:
        fn.__base_doc__ = fn.__doc__
        _DERIVED.append((name, fn, parameters, epilog))
        try:
            _refresh(name, fn, parameters, epilog)
        except CommandError:  # said, as one error line, when the command line runs (refresh_commands)
            fn.__signature__ = inspect.Signature([])
        return app.command(name)(fn)

    return register


def _refresh(name: str, fn: Callable, parameters, epilog) -> None:
    fn.__signature__ = _signature(name, parameters())
    if epilog is not None:
        fn.__doc__ = fn.__base_doc__.rstrip() + "\n\n" + epilog()


def refresh_commands() -> None:
    """Build every derived command's parameters (and epilog) again from the tables as they are now."""
    for entry in _DERIVED:
        _refresh(*entry)


def cli_flags() -> dict[str, str]:
    """Every declared option's Python name and flag (``num_chains -> --chains``, ``leapfrog_steps -> --leapfrog-steps``,
    ``eps -> --eps``), for messages of the library shown on the command line."""
    from ..refinement.options import REFINE_OPTIONS
    from ..samplers.registry import declared_options

    flags = {}
    for option in (*declared_options().values(), *REFINE_OPTIONS.values()):
        if option.kind is not None:
            flags[option.name] = option.flag
    return flags
