"""Progress bars (tqdm) that cost nothing, not even tqdm's import, when they are off."""

from __future__ import annotations

import sys


def progress_bar(total: int, progress: bool | None, desc: str, initial: int = 0):
    """A tqdm bar, or None when ``progress`` is False, or None (auto) and stderr is not a terminal.

    Returning before ``tqdm.auto`` is imported keeps notebooks without ipywidgets free of its warning
    when no bar is shown.
    """
    if progress is False or (progress is None and not _stderr_is_terminal()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=True)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
