"""Running the package under torchrun on CPU (2 Gloo processes) from a test."""

from __future__ import annotations

import os
import subprocess
import sys


def torchrun(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` on CPU (Gloo)."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert not check or proc.returncode == 0, proc.stderr[-2000:]
    return proc
