"""When can an AIS estimate of log Z be trusted?  Grid truth against AnnealedMALA / AnnealedLangevin over many seeds.

On the shipped demo model (2-D latent) at several betas, ``log Z`` is integrated on a grid; each
annealed sampler estimates it from 500 chains (``--warmup`` annealing steps, 1 recorded step) for
``--seeds`` seeds.  For every estimate: its error in standard errors, the importance ESS, the Pareto
shape k of the weights' tail, and whether ``Chains.log_normalizer()`` flags it reliable.  The rule is
right when every estimate flagged reliable is covered by a few standard errors and the flagged ones
are those that are not.

    python benchmarks/ais_reliability.py
"""

from __future__ import annotations

import argparse
import warnings

import torch

from latentmcmc import AnnealedLangevin, AnnealedMALA, LatentEnergy
from latentmcmc.demo import load_demo_models
from latentmcmc.exact import grid_target

torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", nargs="*", type=float, default=[1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    g, u, _ = load_demo_models()
    print(f"{'beta':>5} {'sampler':>17} {'truth':>8} {'reliable':>9} {'max |z| reliable':>17} "
          f"{'max |z| flagged':>16} {'ESS range':>14} {'k range':>14}")
    for beta in args.betas:
        energy = LatentEnergy(g, u, beta=beta)
        truth = grid_target(energy).log_z
        for cls in (AnnealedMALA, AnnealedLangevin):
            rows = []
            for seed in range(args.seeds):
                z0 = torch.randn(args.chains, 2, generator=torch.Generator().manual_seed(1000 + seed))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = cls(energy, eps=0.01).run(z0, steps=1, warmup=args.warmup, seed=seed).log_normalizer()
                z = (est.estimate - truth) / max(est.stderr, 1e-12)
                rows.append((est.reliable, abs(z), est.importance_ess, est.pareto_k))
            ok = [r for r in rows if r[0]]
            bad = [r for r in rows if not r[0]]
            essr = f"{min(r[2] for r in rows):.0f}-{max(r[2] for r in rows):.0f}"
            kr = f"{min(r[3] for r in rows):.2f}-{max(r[3] for r in rows):.2f}"
            print(f"{beta:>5g} {cls.__name__:>17} {truth:>8.3f} {len(ok):>4} / {len(rows):<3} "
                  f"{max((r[1] for r in ok), default=float('nan')):>17.1f} "
                  f"{max((r[1] for r in bad), default=float('nan')):>16.1f} {essr:>14} {kr:>14}")


if __name__ == "__main__":
    main()
