"""What the online monitor (stop rules) costs, as a share of sampling, at every run length.

MALA, 1,024 chains, one thread, ``record="last"``, eager steps, on ``--target gaussian`` (N(0, I_8), the
cheapest step there is: about 0.2 ms, so the monitor's fixed costs weigh most) or ``--target mlp`` (the
latent energy of a small generator and critic, latent 16, width-128 MLPs: a step of about 2 ms, closer to
a real model's); the same run with and without
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
import sys
import time
import warnings

import torch

from latentmcmc import MALA
from latentmcmc.samplers import Until

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampler_throughput import HelpFormatter, make_energy  # noqa: E402 - the throughput benchmark's MLP pair

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


def target(name: str):
    """``(energy, latent size, eps)`` of ``--target``."""
    if name == "gaussian":
        return (lambda z: 0.5 * z.square().sum(1)), 8, 0.5
    return make_energy(16, "cpu", "mlp"), 16, 0.1


def timed(steps: int, until: Until | None, name: str) -> tuple[float, int]:
    energy, latent, eps = target(name)
    z0 = torch.randn(1024, latent, generator=torch.Generator().manual_seed(0))
    sampler = MALA(energy, eps=eps)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chains = sampler.run(z0, steps=steps, seed=1, record="last", until=until, progress=False, fuse=False)
    return time.perf_counter() - t0, len(chains.extra.get("online_history", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--steps", nargs="*", type=int, default=[100, 1000, 10000, 100000],
                        help="run lengths (recorded steps) to time")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds per length up to 10,000 steps (longer runs: one round); the best is kept")
    parser.add_argument("--target", choices=["gaussian", "mlp"], default="gaussian",
                        help="what is sampled: N(0, I_8) (the cheapest step) or a small generator and critic")
    args = parser.parse_args()
    what = "N(0, I_8)" if args.target == "gaussian" else "latent 16, width-128 MLPs"
    print(f"load average {os.getloadavg()[0]:.2f}; MALA, {what}, 1,024 chains, one thread, best of {args.repeats}")
    print(f"{'steps':>8} {'sampling s':>11} {'with monitor s':>15} {'checks':>7} {'overhead':>9} {'own time':>9}")
    _timed_methods()
    timed(100, Until(min_ess=1e12, check_every=50), args.target)  # untimed: one-off start-up costs land here
    for steps in args.steps:
        plain, monitored, own, checks = float("inf"), float("inf"), float("inf"), 0
        for _ in range(args.repeats if steps <= 10_000 else 1):
            plain = min(plain, timed(steps, None, args.target)[0])
            OWN[0] = 0.0
            seconds, checks = timed(steps, Until(min_ess=1e12, check_every=50), args.target)
            monitored, own = min(monitored, seconds), min(own, OWN[0])
        print(f"{steps:>8} {plain:>11.2f} {monitored:>15.2f} {checks:>7} {(monitored - plain) / plain:>8.1%} "
              f"{own / plain:>8.1%}")


if __name__ == "__main__":
    main()
