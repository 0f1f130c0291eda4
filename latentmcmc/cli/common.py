"""What the commands share: the typer app, the one-line error exit, and option parsing."""

from __future__ import annotations

from typing import Any, Callable, NoReturn, Optional

import torch
import typer

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_UNUSABLE = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_CODES = {  # the one list: `latentmcmc --help` and README's table say the same
    EXIT_OK: "done",
    EXIT_ERROR: "bad input or a failure, reported on one 'error:' line, nothing written",
    EXIT_UNUSABLE: "finished but unusable: every recorded transition diverged, every chain froze or no recorded chain "
                   "moved (outputs written, flagged)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): a refinement writes the draws completed so far, flagged",
    EXIT_TERMINATED: "terminated (SIGTERM, as schedulers send): handled as Ctrl-C",
}

app = typer.Typer(
    name="latentmcmc",
    help="Refine a trained generator's samples by MCMC in its latent space.",
    epilog="Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings are hard-wrapped paragraphs: let the terminal reflow them
    context_settings={"help_option_names": ["-h", "--help"]},
)


class CommandError(Exception):
    """An expected failure of a command: printed as one ``error:`` line, exit code 2."""


def check_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA must be present when asked for."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise CommandError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandError(f"device {device!r} was asked for but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CommandError(f"device {device!r} was asked for but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type != "cpu":
        raise CommandError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return dev


def parse_shape(text: str, what: str = "latent shape") -> tuple[int, ...]:
    """``"128"`` or ``"4,4,8"`` (also ``4x4x8``) -> a tuple of positive ints (a CommandError naming ``what``)."""
    from ..refinement.options import parse_shape as parse

    try:
        return parse(text)
    except ValueError as err:
        raise CommandError(f"{what} {err}") from None


def version_callback(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"latentmcmc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.", metavar="",
                                       callback=version_callback, is_eager=True),
          threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads torch uses (before the command: "
                                                "latentmcmc --threads 1 refine ...). One thread was faster for "
                                                "runs of 64 chains or fewer, and next to another busy process  "
                                                "\\[default: torch's, one per core]", show_default=False)) -> None:
    """Refine a trained generator's samples by MCMC in its latent space."""
    if threads is not None:
        if threads < 1:
            raise CommandError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


_INTERRUPT_SAID = [False]  # a command said what its Ctrl-C left behind (else main() gives the general line)


def stop_interrupted(message: str) -> NoReturn:
    """End a command stopped by Ctrl-C (or SIGTERM) with ``message`` (what it left behind) on stderr: exit 130."""
    typer.echo(message, err=True)
    _INTERRUPT_SAID[0] = True
    raise typer.Exit(EXIT_INTERRUPTED)


def interrupt_said(reset: bool = False) -> bool:
    """Whether the command said what its interruption left behind (``reset``: forget it, for a new command)."""
    said = _INTERRUPT_SAID[0]
    if reset:
        _INTERRUPT_SAID[0] = False
    return said


def exit_for(metrics: dict) -> None:
    """End a command that wrote a refinement's outputs with the code its metrics call for (130, 3 or 0)."""
    import sys

    sys.stdout.flush()
    if metrics.get("interrupted"):  # the printed table says so
        _INTERRUPT_SAID[0] = True
        raise typer.Exit(EXIT_INTERRUPTED)
    if metrics.get("unusable"):
        raise typer.Exit(EXIT_UNUSABLE)


def progress_flag(quiet: bool) -> bool | None:
    """``--quiet`` turns progress bars off; otherwise they show when stderr is a terminal."""
    return False if quiet else None


_LIVE_HELP: list[tuple[Any, Callable[[], str]]] = []


def live_help(option, text: Callable[[], str]):
    """``option`` (a ``typer.Option``) whose help text is ``text()`` when the CLI runs, not when it is imported.

    Help that lists a table's entries then includes entries registered after import (a new sampler).
    """
    option.help = text()
    _LIVE_HELP.append((option, text))
    return option


def refresh_help() -> None:
    """Recompute every :func:`live_help` text from the tables as they are now."""
    for option, text in _LIVE_HELP:
        option.help = text()


def flag(default: bool | None, *names: str, help: str, show_default: bool = True):
    """A boolean flag option without the ``<bool>`` metavar (it takes no value)."""
    return typer.Option(default, *names, help=help, metavar="", show_default=show_default)


def choices(table) -> str:
    """``a, b, c``: the names of a table of choices (a dict or a tuple), for help texts and errors."""
    return ", ".join(table)


def described(table) -> str:
    """``a: summary; b: summary``: a table's names with the ``summary`` of each entry, for help texts."""
    return "; ".join(f"{name}: {entry.summary}" for name, entry in table.items())


def check_choice(option: str, value: str, table, what: str) -> str:
    """``value`` if it names an entry of ``table``; else a CommandError listing the choices."""
    if value not in table:
        raise CommandError(f"unknown {what} {value!r} for {option}; choose one of {choices(table)}")
    return value
