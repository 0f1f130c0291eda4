"""Refine a class-conditional GAN for all ten digit classes in one run; each class's accuracy and FD, before and after.

Needs the models of ``examples/cdcgan_digits.py`` (``python examples/cdcgan_digits.py --out runs/cdcgan``).
For each beta it runs ``latentmcmc refine --classes 0-9`` (MALA, 2,000 chains, 200 warm-up + 200 steps)
and prints one markdown table: per class the share of its samples the shipped digit classifier gives
that class, before and after, and below it the feature-space FD, KID, precision, recall, coverage and IS
of all samples against the 1,797 real digits.

    python benchmarks/conditional_digits.py --models runs/cdcgan --betas 1 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(models: Path, beta: float, out: Path, chains: int, steps: int) -> dict:
    cmd = [sys.executable, "-m", "latentmcmc", "refine", "--generator", str(models / "g.pt2"), "--critic",
           str(models / "d.pt2"), "--latent-shape", "32", "--critic-output", "logit", "--data-shape", "1,8,8",
           "--classes", "0-9", "--chains", str(chains), "--steps", str(steps), "--warmup", str(steps),
           "--beta", str(beta), "--features", str(models / "features.pt2"), "--classifier",
           str(models / "classifier.pt2"), "--reference", str(models / "reference.npz"), "--seed", "0", "-q",
           "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_seconds"] = time.perf_counter() - t0
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("runs/cdcgan"))
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/conditional_digits"))
    args = parser.parse_args()
    results = {beta: run(args.models, beta, args.out / f"beta{beta:g}", args.chains, args.steps) for beta in args.betas}
    first = next(iter(results.values()))
    header = "| class | prior | " + " | ".join(f"MALA beta {b:g}" for b in results) + " |"
    print(header)
    print("|" + "---|" * (2 + len(results)))
    for k in first["per_class"]:
        cells = [f"{first['per_class'][k]['accuracy_before']:.3f}"]
        cells += [f"{m['per_class'][k]['accuracy_after']:.3f}" for m in results.values()]
        print(f"| {k} | " + " | ".join(cells) + " |")
    mean = lambda pc, key: sum(v[key] for v in pc.values()) / len(pc)  # noqa: E731
    cells = [f"{mean(first['per_class'], 'accuracy_before'):.3f}"]
    cells += [f"{mean(m['per_class'], 'accuracy_after'):.3f}" for m in results.values()]
    print("| mean | " + " | ".join(cells) + " |")
    for key in ("fd", "kid", "precision", "recall", "coverage", "is"):
        cells = [f"{first['quality']['before'][key]:.3f}"]
        cells += [f"{m['quality']['after'][key]:.3f}" for m in results.values()]
        print(f"| {key} | " + " | ".join(cells) + " |")
    for beta, m in results.items():
        print(f"beta {beta:g}: acceptance {m['acceptance']:.3f}, eps {m['eps_mean']:.3g}, "
              f"{m['wall_seconds']:.0f} s wall (command included)")


if __name__ == "__main__":
    main()
