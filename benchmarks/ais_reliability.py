"""When can an AIS estimate of log Z be trusted?  Grid truth against AnnealedMALA / AnnealedLangevin over many seeds.

On the shipped demo model (2-D latent) at several betas, ``log Z`` is integrated on a grid; each
annealed sampler estimates it from ``--chains`` chains (``--warmups`` annealing steps, short and long,
1 recorded step) for ``--seeds`` seeds.  For every estimate: its error in standard errors, the
importance ESS, the Pareto shape k of the weights' tail, the two halves' disagreement, and whether
``Chains.log_normalizer()`` flags it reliable.  The rule is right when every estimate flagged reliable
is covered by its error bar and the flagged ones are those that are not; a "miss" is an estimate more
than 4 standard errors from the truth.

    python benchmarks/ais_reliability.py                      # the README's table
    python benchmarks/ais_reliability.py --csv ais.csv        # every estimate, for choosing a rule
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings

import torch

from latentmcmc import AnnealedLangevin, AnnealedMALA, LatentEnergy
from latentmcmc.demo import load_demo_models
from latentmcmc.diagnostics.importance import split_disagreement
from latentmcmc.exact import grid_target

torch.set_num_threads(1)
MISS = 4.0  # |error| / stderr above this is a miss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", nargs="*", type=float, default=[1.0, 3.0, 10.0])
    parser.add_argument("--warmups", nargs="*", type=int, default=[50, 200])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument("--csv", default=None, help="write every estimate to this CSV file")
    args = parser.parse_args()
    g, u, _ = load_demo_models()
    t0 = time.perf_counter()
    records = []
    print(f"{'beta':>5} {'warmup':>6} {'sampler':>17} {'truth':>8} {'reliable':>9} {'max |z| reliable':>17} "
          f"{'max |z| flagged':>16} {'misses flagged':>15} {'ESS range':>10} {'k range':>12}")
    for beta in args.betas:
        energy = LatentEnergy(g, u, beta=beta)
        truth = grid_target(energy).log_z
        for warmup in args.warmups:
            for cls in (AnnealedMALA, AnnealedLangevin):
                rows = []
                for seed in range(args.seeds):
                    z0 = torch.randn(args.chains, 2, generator=torch.Generator().manual_seed(1000 + seed))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        run = cls(energy, eps=0.01).run(z0, steps=1, warmup=warmup, seed=seed)
                        est = run.log_normalizer()
                    z = (est.estimate - truth) / max(est.stderr, 1e-12)
                    row = dict(beta=beta, warmup=warmup, sampler=cls.__name__, seed=seed, truth=truth,
                               estimate=est.estimate, stderr=est.stderr, z=z, ess=est.importance_ess,
                               ess_share=est.importance_ess / args.chains, k=est.pareto_k,
                               split=split_disagreement(run.log_weights), reliable=est.reliable)
                    rows.append(row)
                records += rows
                ok = [r for r in rows if r["reliable"]]
                bad = [r for r in rows if not r["reliable"]]
                misses = [r for r in rows if abs(r["z"]) > MISS]
                caught = sum(not r["reliable"] for r in misses)
                print(f"{beta:>5g} {warmup:>6} {cls.__name__:>17} {truth:>8.3f} {len(ok):>4} / {len(rows):<3} "
                      f"{max((abs(r['z']) for r in ok), default=float('nan')):>17.1f} "
                      f"{max((abs(r['z']) for r in bad), default=float('nan')):>16.1f} "
                      f"{caught:>7} / {len(misses):<6} "
                      f"{min(r['ess'] for r in rows):>4.0f}-{max(r['ess'] for r in rows):<5.0f} "
                      f"{min(r['k'] for r in rows):>5.2f}-{max(r['k'] for r in rows):<6.2f}")
    misses = [r for r in records if abs(r["z"]) > MISS]
    unflagged = [r for r in misses if r["reliable"]]
    good = [r for r in records if r["sampler"] == "AnnealedMALA" and abs(r["z"]) <= MISS]
    print(f"\n{len(records)} estimates, {len(misses)} misses (|z| > {MISS:g}), {len(unflagged)} of them flagged "
          f"reliable; AnnealedMALA's covered estimates flagged reliable: {sum(r['reliable'] for r in good)} of "
          f"{len(good)}. {time.perf_counter() - t0:.0f} s.")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)


if __name__ == "__main__":
    main()
