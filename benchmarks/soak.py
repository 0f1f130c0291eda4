"""A long run's memory: 100,000 steps with ``record="last"`` and a stop rule, resident memory sampled as it goes.

MALA on N(0, I_8), 1,024 chains, one thread, ``until=Until(min_ess=1e12)`` (a rule that never holds: the run
goes to its cap and the monitor checks all the way).  A thread reads the process's resident memory
(``VmRSS`` of ``/proc/self/status``) every ``--every`` seconds; the table shows it over the run.  Nothing
the run keeps grows with its length (the monitor's summary is bounded, ``record="last"`` keeps one state),
so the curve should be flat after the first seconds.

    python benchmarks/soak.py --steps 100000
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings

import torch

from latentmcmc import MALA
from latentmcmc.samplers import Until

torch.set_num_threads(1)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory readings")
    args = parser.parse_args()
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def watch() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - t0, rss_mib()))
            done.wait(args.every)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    z0 = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5).run(
            z0, steps=args.steps, seed=1, record="last", until=Until(min_ess=1e12, check_every=50), progress=False,
            fuse=False)
    done.set()
    watcher.join()
    samples.append((time.perf_counter() - t0, rss_mib()))
    print(f"load average {os.getloadavg()[0]:.2f}; {args.steps} steps, {len(chains.extra['online_history'])} checks, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'seconds':>8} {'resident MiB':>13}")
    for seconds, mib in samples:
        print(f"{seconds:>8.0f} {mib:>13.1f}")
    later = [mib for seconds, mib in samples if seconds > 10]
    if later:
        print(f"after the first 10 s: {min(later):.1f} to {max(later):.1f} MiB")


if __name__ == "__main__":
    main()
