"""Our diagnostics against the installed ArviZ on the same arrays, side by side, and their share of a refine.

Shapes: (4 chains x 1000 draws x 10,000 parameters), (1024 chains x 500 draws x 64 parameters) and a real-GAN
refine's (5000 chains x 100 draws x 64 parameters).
Rows: ``ess`` (bulk), ``rhat`` (rank), and ``ess_rhat`` (bulk ESS, tail ESS and rank R-hat from one
sort, what a refinement report computes) against ArviZ's three separate calls.  Prints seconds, the
speed-up and the largest relative difference.  ArviZ 0.x is timed through ``arviz.ess``/``arviz.rhat``;
ArviZ 1.x through ``arviz_stats``.  ``--refine`` also times the post-run diagnostics of a default
``refine`` (1,000 chains, 500 + 500 steps) of a digits model against its sampling time (interleaved, best of
``--repeats`` each).

    python benchmarks/diagnostics_speed.py [--device cpu|cuda] [--repeats 1] [--refine runs/digits300.pt]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

from latentmcmc.diagnostics import ess, ess_rhat, rhat


def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz

    if int(arviz.__version__.split(".")[0]) < 1:
        return (
            f"arviz {arviz.__version__}",
            lambda x: arviz.ess(x, method="bulk"),
            lambda x: arviz.rhat(x, method="rank"),
            lambda x: (arviz.ess(x, method="bulk"), arviz.ess(x, method="tail"), arviz.rhat(x, method="rank")),
            arviz.convert_to_dataset,
        )
    import arviz_stats

    return (
        f"arviz-stats {arviz_stats.__version__}",
        lambda x: arviz_stats.ess(x, method="bulk", chain_axis=0, draw_axis=1),
        lambda x: arviz_stats.rhat(x, method="rank", chain_axis=0, draw_axis=1),
        lambda x: (arviz_stats.ess(x, method="bulk", chain_axis=0, draw_axis=1),
                   arviz_stats.ess(x, method="tail", chain_axis=0, draw_axis=1),
                   arviz_stats.rhat(x, method="rank", chain_axis=0, draw_axis=1)),
        lambda x: x,
    )


def as_array(result) -> np.ndarray:
    if isinstance(result, tuple):
        return np.stack([as_array(r) for r in result])
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
    parser.add_argument("--small", action="store_true",
                        help="shapes a tenth as large in chains and parameters (to check the script quickly)")
    parser.add_argument("--refine", default=None, help="a checkpoint: time a default refine's diagnostics against its sampling")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}")
    if args.no_reference:
        ref_ess = ref_rhat = ref_all = None
        prepare = lambda x: x  # noqa: E731
        print(f"latentmcmc diagnostics on {args.device} ({torch.get_num_threads()} threads), float64")
        print(f"{'shape':>22} {'diagnostic':>14} {'ours s':>8}")
    else:
        name, ref_ess, ref_rhat, ref_all, prepare = reference()
        print(f"latentmcmc diagnostics on {args.device} ({torch.get_num_threads()} threads) vs {name}, float64")
        print(f"{'shape':>22} {'diagnostic':>14} {'ours s':>8} {'ref s':>8} {'speed-up':>8} {'max rel diff':>13}")
    rng = np.random.default_rng(0)
    shapes = [(4, 1000, 10_000), (1024, 500, 64), (5000, 100, 64)]
    if args.small:
        shapes = [(max(4, c // 10), n, max(4, p // 10)) for c, n, p in shapes]
    for shape in shapes:
        x = rng.standard_normal(shape).cumsum(1) * 0.05 + rng.standard_normal(shape)
        xt = torch.as_tensor(x, device=args.device)
        xr = prepare(x)
        both = lambda t: torch.stack(ess_rhat(t))  # noqa: E731
        times = {}
        for label, ours_fn, ref_fn in [("ess bulk", ess, ref_ess), ("rhat rank", rhat, ref_rhat),
                                       ("bulk+tail+rhat", both, ref_all)]:
            t_ours, ours = clock(lambda: ours_fn(xt), args.repeats, args.device)
            if args.no_reference:
                times[label] = (t_ours, None)
                print(f"{str(shape):>22} {label:>14} {t_ours:8.2f}")
                continue
            t_ref, ref = clock(lambda: ref_fn(xr), 1, "cpu")
            times[label] = (t_ours, t_ref)
            ref = as_array(ref)
            diff = float(np.max(np.abs(ours.cpu().numpy() - ref) / np.abs(ref)))
            print(f"{str(shape):>22} {label:>14} {t_ours:8.2f} {t_ref:8.2f} {t_ref / t_ours:7.1f}x {diff:13.1e}")
        ours_sum = times["ess bulk"][0] + times["rhat rank"][0]  # the measure: ess, then rhat
        if args.no_reference:
            print(f"{str(shape):>22} {'ess then rhat':>14} {ours_sum:8.2f}")
        else:
            ref_sum = times["ess bulk"][1] + times["rhat rank"][1]
            print(f"{str(shape):>22} {'ess then rhat':>14} {ours_sum:8.2f} {ref_sum:8.2f} {ref_sum / ours_sum:7.1f}x")
    if args.refine:
        refine_share(args.refine, args.repeats)


def refine_share(checkpoint: str, repeats: int = 1) -> None:
    """Post-run diagnostics (run_metrics) of a default refine against its sampling time, interleaved, best of ``repeats``."""
    from latentmcmc.checkpoint import load_models
    from latentmcmc.energy import LatentEnergy
    from latentmcmc.refinement import RefineOptions, run_metrics
    from latentmcmc.refinement.blocks import run_blocks

    g, u, config = load_models(checkpoint)
    shape = (int(config["latent_dim"]),)
    options = RefineOptions(progress=False)
    sampling = diagnostics = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        blocks, _ = run_blocks(LatentEnergy(g, u), shape, options)
        sampling = min(sampling, time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_metrics(blocks[0].chains)
        diagnostics = min(diagnostics, time.perf_counter() - t0)
    print(f"default refine of {checkpoint} (latent {shape[0]}, {options.num_chains} chains, {options.warmup} + "
          f"{options.steps} steps), best of {repeats}: sampling {sampling:.1f} s, diagnostics {diagnostics:.2f} s "
          f"({100 * diagnostics / sampling:.1f}%); load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
