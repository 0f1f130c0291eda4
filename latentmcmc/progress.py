"""Progress: tqdm bars on a terminal; elsewhere (a log file, a scheduler's job) a plain line every tenth of the run.

Nothing is built, not even tqdm's import, when progress is off.
"""

from __future__ import annotations

import sys
import time

__all__ = ["progress_bar", "ProgressLines"]


def progress_bar(total: int, progress: bool | None, desc: str, initial: int = 0):
    """A tqdm bar when ``progress`` is True, or None (auto) and stderr is a terminal; :class:`ProgressLines`
    when ``progress`` is None and stderr is not a terminal (a job's log shows that the run is alive); None
    when ``progress`` is False.

    Returning before ``tqdm.auto`` is imported keeps notebooks without ipywidgets free of its warning
    when no bar is shown.
    """
    if progress is False:
        return None
    if progress is None and not _stderr_is_terminal():
        return ProgressLines(total, desc, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=True)


class ProgressLines:
    """The part of tqdm's interface the commands use, printing one line to stderr at every tenth of the run.

    ``desc: 30% (2400/8000 steps), 42 s, critic=0.13, gen=-0.4``: enough for a log file or a scheduler's
    output to show the run is alive and how far it is, without a terminal's redrawing bar.
    """

    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        self.total, self.desc, self.n = total, desc, initial
        self._postfix = ""
        self._start = time.perf_counter()
        self._shown = self._tenth(initial)

    def _tenth(self, n: int) -> int:
        return 10 * n // max(self.total, 1)

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = self._tenth(self.n)
        if tenth > self._shown:
            self._shown = tenth
            self._print()

    def _print(self) -> None:
        pct = 100 * self.n // max(self.total, 1)
        line = f"{self.desc}: {pct}% ({self.n}/{self.total} steps), {time.perf_counter() - self._start:.0f} s"
        print(line + (f", {self._postfix}" if self._postfix else ""), file=sys.stderr, flush=True)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._postfix = text

    def unpause(self) -> None:
        pass

    def close(self) -> None:
        pass


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
