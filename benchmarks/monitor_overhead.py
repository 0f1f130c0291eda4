"""What the online monitor (stop rules) costs, as a share of sampling, at every run length.

MALA on N(0, I_8), 1,024 chains, one thread, ``record="last"``, eager steps; the same run with and without
``until=Until(min_ess=1e12, check_every=50)`` (a rule that never holds, so the run goes to its cap and
makes every check), interleaved, best of ``--repeats`` rounds for each length; "overhead" is the difference of
the two runs' times, "own time" the time spent inside the monitor's methods (timed there: steadier on a
shared machine, where the difference moves by several percent from round to round), both as a share of
the plain run.  The monitor's summary has
the same size at every length (:mod:`latentmcmc.samplers.monitor`), so the overhead should not grow.

    python benchmarks/monitor_overhead.py --steps 100 1000 10000 100000
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch

from latentmcmc import MALA
from latentmcmc.samplers import Until

torch.set_num_threads(1)

OWN = [0.0]  # seconds spent inside the monitor's methods (its own time, which the run's noise does not blur)


def _timed_methods() -> None:
    from latentmcmc.samplers import monitor

    for name in ("__init__", "record_block", "check"):
        method = getattr(monitor.Monitor, name)

        def wrapper(*args, _method=method, **kwargs):
            t0 = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                OWN[0] += time.perf_counter() - t0

        setattr(monitor.Monitor, name, wrapper)


def timed(steps: int, until: Until | None) -> tuple[float, int]:
    z0 = torch.randn(1024, 8, generator=torch.Generator().manual_seed(0))
    sampler = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chains = sampler.run(z0, steps=steps, seed=1, record="last", until=until, progress=False, fuse=False)
    return time.perf_counter() - t0, len(chains.extra.get("online_history", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="*", type=int, default=[100, 1000, 10000, 100000],
                        help="run lengths (recorded steps) to time")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds per length up to 10,000 steps (longer runs: one round); the best is kept")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; MALA, N(0, I_8), 1,024 chains, one thread, best of {args.repeats}")
    print(f"{'steps':>8} {'sampling s':>11} {'with monitor s':>15} {'checks':>7} {'overhead':>9} {'own time':>9}")
    _timed_methods()
    for steps in args.steps:
        plain, monitored, own, checks = float("inf"), float("inf"), float("inf"), 0
        for _ in range(args.repeats if steps <= 10_000 else 1):
            plain = min(plain, timed(steps, None)[0])
            OWN[0] = 0.0
            seconds, checks = timed(steps, Until(min_ess=1e12, check_every=50))
            monitored, own = min(monitored, seconds), min(own, OWN[0])
        print(f"{steps:>8} {plain:>11.2f} {monitored:>15.2f} {checks:>7} {(monitored - plain) / plain:>8.1%} "
              f"{own / plain:>8.1%}")


if __name__ == "__main__":
    main()
