"""One run at a time into an output: a lock that a crashed run cannot leave held, and the leftovers it removes.

``latentmcmc refine``, ``compare``, ``demo`` and ``train`` take an :class:`OutputLock` on their output before
they write anything.  The lock is an advisory ``flock`` on a small file beside the outputs: the kernel
releases it when the process ends, however it ends (SIGKILL included), so a crashed run never blocks the
next one; a second run started while the first is alive is refused with the first one's process id.
Holding the lock, a run removes what a killed run may have left: staging folders and ``.<name>.*.tmp``
files of interrupted atomic writes.  Where ``fcntl`` is missing (Windows) runs are not locked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["OutputLock", "locked_output", "stale_files", "LOCK_NAME"]

LOCK_NAME = ".latentmcmc-lock"


class OutputLock:
    """An exclusive lock on ``folder`` (``lock_file`` inside it by default), created if missing.

    :meth:`acquire` raises a ValueError naming the holder's process when another live run holds it;
    :meth:`release` removes the lock file, and ``folder`` too when this lock created it and it is empty.
    """

    def __init__(self, folder: str | os.PathLike, lock_file: str = LOCK_NAME) -> None:
        self.folder = Path(folder)
        self.path = self.folder / lock_file
        self.created = False
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self._undo_folder()
                raise ValueError(f"another latentmcmc run (process {holder}) is writing into {self.folder}: wait for "
                                 "it to finish, or give another output") from None
            try:  # the holder before us may have removed the file after we opened it: lock the file that is there
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        self._undo_folder()

    def _undo_folder(self) -> None:
        if self.created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only when empty: nothing of this run's was kept


def stale_files(folder: str | os.PathLike, names: tuple[str, ...] = ()) -> list[Path]:
    """What killed runs left in ``folder``: staging folders, and ``.<name>.*.tmp`` files of interrupted atomic
    writes (of any file, or only of ``names`` when given)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = [".staging-*"] if not names else []
    patterns += [f".{name}.*.tmp" for name in names] if names else [".*.tmp"]
    return sorted({p for pattern in patterns for p in folder.glob(pattern)})


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def locked_output(folder: str | os.PathLike, lock_file: str = LOCK_NAME, names: tuple[str, ...] = (),
                  active: bool = True) -> Iterator[OutputLock | None]:
    """Hold the lock on ``folder`` for the duration and first remove the leftovers of killed runs there.

    ``names``: only the leftovers of atomic writes of these files (a checkpoint beside other files);
    ``active=False`` (other ranks of a torchrun job, which rank 0 speaks for) does nothing.
    """
    if not active:
        yield None
        return
    lock = OutputLock(folder, lock_file).acquire()
    try:
        remove([p for p in stale_files(folder, names) if p != lock.path])
        yield lock
    finally:
        lock.release()
