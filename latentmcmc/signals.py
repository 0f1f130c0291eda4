"""Holding back Ctrl-C and SIGTERM while a few operations that must not be cut in half finish."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

__all__ = ["interrupts_deferred"]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM for the duration; afterwards act on the one that came.

    The handler that was in place runs then (Ctrl-C's and the command line's SIGTERM handler raise
    KeyboardInterrupt); a default SIGTERM ends the process.  Outside the main thread signals cannot be
    caught, and nothing is held back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), received[0])  # the default action (SIGTERM: end the process), now that it may
            raise KeyboardInterrupt
