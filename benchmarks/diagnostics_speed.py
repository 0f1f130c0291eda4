"""Our torch ess(bulk) and rhat(rank) against the installed ArviZ on the same arrays, side by side.

Shapes: (4 chains x 1000 draws x 10,000 parameters) and (1024 chains x 500 draws x 64 parameters).
Prints seconds, the speed-up and the largest relative difference between the two results.  ArviZ
0.x is timed through ``arviz.ess``/``arviz.rhat``; ArviZ 1.x through ``arviz_stats``.

    python benchmarks/diagnostics_speed.py [--device cpu|cuda] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from latentmcmc.diagnostics import ess, rhat


def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz

    if int(arviz.__version__.split(".")[0]) < 1:
        return (
            f"arviz {arviz.__version__}",
            lambda x: arviz.ess(x, method="bulk"),
            lambda x: arviz.rhat(x, method="rank"),
            arviz.convert_to_dataset,
        )
    import arviz_stats

    return (
        f"arviz-stats {arviz_stats.__version__}",
        lambda x: arviz_stats.ess(x, method="bulk", chain_axis=0, draw_axis=1),
        lambda x: arviz_stats.rhat(x, method="rank", chain_axis=0, draw_axis=1),
        lambda x: x,
    )


def as_array(result) -> np.ndarray:
    if hasattr(result, "data_vars"):  # an xarray Dataset from arviz.ess(ndarray)
        result = next(iter(result.data_vars.values()))
    return np.asarray(result)


def clock(fn, repeats: int, device: str):
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true", help="time ours only")
    args = parser.parse_args()
    name, ref_ess, ref_rhat, prepare = reference()
    print(f"latentmcmc diagnostics on {args.device} ({torch.get_num_threads()} threads) vs {name}, float64")
    print(f"{'shape':>22} {'diagnostic':>10} {'ours s':>8} {'ref s':>8} {'speed-up':>8} {'max rel diff':>13}")
    rng = np.random.default_rng(0)
    for shape in [(4, 1000, 10_000), (1024, 500, 64)]:
        x = rng.standard_normal(shape).cumsum(1) * 0.05 + rng.standard_normal(shape)
        xt = torch.as_tensor(x, device=args.device)
        xr = prepare(x)
        for label, ours_fn, ref_fn in [("ess bulk", ess, ref_ess), ("rhat rank", rhat, ref_rhat)]:
            t_ours, ours = clock(lambda: ours_fn(xt), args.repeats, args.device)
            if args.no_reference:
                print(f"{str(shape):>22} {label:>10} {t_ours:8.2f}")
                continue
            t_ref, ref = clock(lambda: ref_fn(xr), 1, "cpu")
            ref = as_array(ref)
            diff = float(np.max(np.abs(ours.cpu().numpy() - ref) / np.abs(ref)))
            print(f"{str(shape):>22} {label:>10} {t_ours:8.2f} {t_ref:8.2f} {t_ref / t_ours:7.1f}x {diff:13.1e}")


if __name__ == "__main__":
    main()
