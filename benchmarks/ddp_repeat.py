"""Run the torchrun training of ``tests/training/test_ddp.py`` many times in a row and count the failures.

A test that fails once in a while (a rank aborted with SIGABRT) cannot be shown fixed by one green run;
this loop runs the same two-process Gloo job ``--runs`` times (the checkpoint run and the refused odd batch
of the test) and prints every failure's exit code and the end of its stderr.

    python benchmarks/ddp_repeat.py --runs 50
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    failures = 0
    t0 = time.perf_counter()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            ok = torchrun("-m", "latentmcmc", "train", "--data", "ring8", "--steps", "3", "--width", "16",
                          "--batch-size", "32", "--critic-steps", "1", "-q", "--out", f"{folder}/ddp.pt")
            odd = torchrun("-m", "latentmcmc", "train", "--data", "ring8", "--steps", "1", "--batch-size", "33", "-q",
                           "--out", f"{folder}/x.pt")
        bad = []
        if ok.returncode != 0:
            bad.append(("training", ok))
        if odd.returncode == 0 or "error: batch_size=33 must be divisible by the 2 processes" not in odd.stderr:
            bad.append(("odd batch", odd))
        for what, proc in bad:
            failures += 1
            print(f"run {run}: {what} exited {proc.returncode}\n{proc.stderr[-1500:]}", flush=True)
    print(f"{args.runs} runs, {failures} failures, {time.perf_counter() - t0:.0f} s; load average "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
