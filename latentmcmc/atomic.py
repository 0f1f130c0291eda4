"""Atomic file writes: write beside the target, then rename, with the permissions a plain open() gives."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "default_mode", "WriteError", "describe_os_error", "write_failure"]


class WriteError(ValueError):
    """A file or folder could not be written (disk full, a file-size limit, a read-only file system, ...)."""


def describe_os_error(err: OSError) -> str:
    """What an OSError of a write means, in words, for a message that begins with the folder it concerns."""
    import errno

    words = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (permission denied)",
             errno.EPERM: "is not writable (operation not permitted)", errno.ENOSPC: "has no space left on its device",
             errno.EDQUOT: "is over its disk quota", errno.EFBIG: "cannot take a file that large (a file-size limit)",
             errno.ENOENT: "does not accept new files (a virtual file system such as /proc?)"}
    return words.get(err.errno, f"could not be written ({err.strerror or type(err).__name__})")


def write_failure(err: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``err`` itself, or the cause of a RuntimeError of torch's file writer."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, RuntimeError) and "write" in str(err).lower():  # torch's zip writer: "file write failed"
        return OSError(0, "the write failed")
    return None


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
    except (OSError, RuntimeError) as err:
        cause = write_failure(err)
        if cause is None:
            raise
        raise WriteError(f"could not write {path}: {path.parent} {describe_os_error(cause)}; the previous "
                         f"{path.name} (if any) is intact") from err
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.unlink(tmp)
