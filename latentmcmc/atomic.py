"""Atomic file writes: write beside the target, then rename, with the permissions a plain open() gives."""

from __future__ import annotations

import contextlib
import os
import shutil
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
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[str]:
    """Yield a temporary name beside ``path``; on success it replaces ``path`` by a rename.

    On failure the temporary file (or directory tree, with ``directory=True``, for stores such as
    Zarr that the writer creates itself) is removed and an existing ``path`` is left untouched, so a
    crash never leaves a half-written result under the final name.  The result gets the umask's
    permissions (``mkstemp`` alone would make it private).  A directory cannot be renamed over a
    non-empty one, so an existing directory ``path`` is removed just before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    if directory:
        os.unlink(tmp)  # the writer creates the directory under this free name
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory))
        if directory and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.unlink(tmp)
