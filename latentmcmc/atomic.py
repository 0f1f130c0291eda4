"""Atomic file writes: write beside the target, then rename, with the permissions a plain open() gives."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "default_mode"]


def default_mode(directory: bool = False) -> int:
    """Permissions a new file (``0o666``) or directory (``0o777``) gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it replaces ``path`` in one rename.

    On failure the temporary file is removed and an existing ``path`` is left untouched, so a crash
    never leaves a half-written file under the final name.  The result gets ``0o666 & ~umask``
    permissions (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
