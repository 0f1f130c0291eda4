"""The entry point: runs the typer app and turns every failure into one ``error:`` line, exit code 2."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import warnings

from ..process_group import leave
from . import compare, demo, diagnose, fit_critic, refine, train  # noqa: F401  (the commands register themselves on ``app``)
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    app,
    interrupt_said,
    refresh_help,
)
from .declared import refresh_commands

__all__ = ["app", "main"]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(text: str) -> str:
    """The message on one line, without terminal colour codes (torch colours some of its errors)."""
    return " ".join(_ANSI.sub("", text).split())


_SPELLINGS = {  # phrases of library messages that the declarations do not give (values, CLI-only names)
    "latent_dim": "--latent-dim", "checkpoint_every": "--checkpoint-every",
    "warmup='auto'": "--warmup auto", "keep='best'": "--keep best", "beta must": "--beta must",
    "warmup must": "--warmup must", "resample needs": "--resample needs", "give warmup as": "give --warmup as",
}


def cli_names(message: str) -> str:
    """A library message with the CLI's flag names (``--block-size`` rather than ``block_size``).

    The names come from the declarations of the options (:func:`~.declared.cli_flags`) and a few spellings.
    """
    from .declared import cli_flags

    flags = cli_flags()
    for name, flag in _SPELLINGS.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w])", flag, message)
    for name, flag in flags.items():  # name=value (settings in resume refusals) as the flag and its value
        message = re.sub(rf"(?<![\w.-])(?:sampler\.)?{re.escape(name)}=", f"{flag} ", message)
    for name, flag in flags.items():  # a bare name only where it cannot be an ordinary word
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w])", flag, message)
    return message


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {cli_names(_one_line(str(message)))}", file=sys.stderr)


ROOT_OPTIONS = ("--threads",)
"""Options of ``latentmcmc`` itself, which a user may put after the command by mistake."""


RENAMED_FLAGS = {"--no-prior": ("--prior", "none")}
"""Flags of earlier versions -> what they are now (said on stderr when used)."""


def renamed_flags(argv: list[str]) -> list[str]:
    """``argv`` with the flags of :data:`RENAMED_FLAGS` spelled as now, each one said once on stderr."""
    out: list[str] = []
    for arg in argv:
        if arg in RENAMED_FLAGS and RENAMED_FLAGS[arg][0] in argv:
            raise ValueError(f"{arg} (now {' '.join(RENAMED_FLAGS[arg])}) and {RENAMED_FLAGS[arg][0]} both given: give one")
        if arg in RENAMED_FLAGS:
            print(f"warning: {arg} is now {' '.join(RENAMED_FLAGS[arg])}", file=sys.stderr)
            out.extend(RENAMED_FLAGS[arg])
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; expected failures print one ``error:`` line on stderr and return 2 (no traceback).

    Set ``LATENTMCMC_DEBUG=1`` to get the traceback of an unexpected error instead.
    """
    try:
        argv = renamed_flags(list(sys.argv[1:] if argv is None else argv))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    showwarning = warnings.showwarning
    warnings.showwarning = _warning_line
    refresh_help()
    terminated = _terminate_as_interrupt()
    interrupt_said(reset=True)
    try:
        refresh_commands()
        result = app(args=argv, prog_name="latentmcmc", standalone_mode=False)
    except KeyboardInterrupt:
        print("terminated" if terminated() else "interrupted", file=sys.stderr)
        return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure becomes one readable line
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):  # click: bad option, missing argument
            if not err.format_message():  # no arguments at all: the help was printed, nothing went wrong
                return 0
            ctx = getattr(err, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if getattr(err, "option_name", None) in ROOT_OPTIONS and ctx is not None and ctx.parent is not None:
                hint = f" ({err.option_name} goes before the command: latentmcmc {err.option_name} ... {ctx.info_name} ...)"
            print(f"error: {_one_line(err.format_message())}{hint}", file=sys.stderr)
            return EXIT_ERROR
        if os.environ.get("LATENTMCMC_DEBUG"):
            raise
        message = out_of_memory(err) or cli_names(_one_line(str(err))) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = showwarning
        terminated.restore()
        leave()  # under torchrun: every rank waits for the others, then the group is torn down
    code = int(result) if isinstance(result, int) else 0
    if code == EXIT_INTERRUPTED and not interrupt_said():  # typer turned a Ctrl-C the command did not catch into 130
        print(f"{'terminated' if terminated() else 'interrupted'}: the command stopped before it finished; its outputs "
              "were not written", file=sys.stderr)
    return EXIT_TERMINATED if code == EXIT_INTERRUPTED and terminated() else code


_ALLOCATION = re.compile(r"(?:can't allocate memory|out of memory|tried to allocate)[^0-9]*([0-9.]+ ?[KMGT]?i?B| [0-9]+ bytes)?",
                         re.IGNORECASE)


def out_of_memory(err: BaseException) -> str | None:
    """A readable line for an allocation that failed (torch's allocator texts, MemoryError), else None."""
    text = str(err)
    match = _ALLOCATION.search(text)
    if not isinstance(err, MemoryError) and match is None:
        return None
    size = ""
    number = re.search(r"allocate (?:memory: you tried to allocate )?([0-9]+) bytes", text)
    if number:
        size = f" ({int(number.group(1)) / 2**30:,.1f} GiB at once)"
    elif match is not None and match.group(1):
        size = f" ({match.group(1).strip()} at once)"
    return (f"not enough memory{size}: run fewer chains at a time (--block-size N, with --record-blocks 1 or --record "
            "last for big runs) or fewer --chains")


class _Termination:
    """SIGTERM handled as Ctrl-C (a KeyboardInterrupt where the main thread is), remembered for the exit code."""

    def __init__(self) -> None:
        self.seen = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __call__(self) -> bool:
        return self.seen

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _terminate_as_interrupt() -> _Termination:
    return _Termination()
