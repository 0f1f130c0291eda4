"""The convolutional energy-GAN recipe on Fashion-MNIST: train with and without the entropy term, then refine.

Needs Debian's ``dataset-fashion-mnist`` (IDX files under /usr/share/datasets/fashion-mnist; exits with a
message when absent) and a classifier for images in [-1, 1]
(``python benchmarks/train_fashion_classifier.py --range=-1,1 --out runs/fashion_pm1``).  For each entropy
term it runs ``latentmcmc train --data train-images-idx3-ubyte.gz`` (the ``images`` recipe of
``SHAPE_RECIPES``, 10% held out, FD/KID along training in the classifier's features), then measures
2,000 prior samples and latent MALA at beta 1 and 3 (2,000 chains, 200 warm-up + 200 steps) against the
10,000 test images: FD, KID, precision, recall, coverage, and the classes the classifier sees (classes
covered, KL of the class histogram to uniform).

    python benchmarks/fashion_energy_gan.py --classifier runs/fashion_pm1 --out runs/fashion_gan --steps 3000

``--reuse`` refines the checkpoints already in ``--out`` (e.g. ``--reuse --entropy dim --betas 3``) and adds
to its ``summary.json``.  A variant of the recipe: ``--tag sn --train-args "--critic-norm spectral --gp-weight 0"``
(checkpoint ``dim-sn.pt``; ``--betas`` with nothing after it measures its prior samples only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

FASHION = Path("/usr/share/datasets/fashion-mnist")


def classes(classifier, x: torch.Tensor) -> dict:
    """Classes the classifier sees among ``x`` and the KL of their histogram to uniform (nats)."""
    from latentmcmc.metrics import kl_to_uniform

    with torch.no_grad():
        labels = torch.cat([classifier(x[i:i + 1000]).argmax(1) for i in range(0, x.shape[0], 1000)])
    counts = torch.bincount(labels, minlength=10)
    return {"classes": int((counts > 0).sum()), "class_kl": kl_to_uniform(counts)}


def train(args, ckpt: Path, term: str) -> dict:
    """Train with one entropy term; the time, the load and the trainer's last line."""
    cmd = [sys.executable, "-m", "latentmcmc", "train", "--data", str(FASHION / "train-images-idx3-ubyte.gz"),
           "--entropy", term, "--features", str(args.classifier / "features.pt2"), "--out", str(ckpt), "-q",
           *args.train_args.split()]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    t0 = time.perf_counter()
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return {"train_seconds": time.perf_counter() - t0, "train": line, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=Path("runs/fashion_pm1"))
    parser.add_argument("--out", type=Path, default=Path("runs/fashion_gan"))
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the recipe's)")
    parser.add_argument("--entropy", nargs="+", default=["dim", "none"])
    parser.add_argument("--betas", type=float, nargs="*", default=[1.0, 3.0],
                        help="MALA's betas; none: only the prior samples are measured")
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--train-args", default="",
                        help="more arguments for train, e.g. '--critic-norm spectral --gp-weight 0' (with --tag)")
    parser.add_argument("--tag", default="", help="names this variant's checkpoint and rows: {entropy}-{tag}")
    parser.add_argument("--reuse", action="store_true",
                        help="refine the checkpoints already in --out instead of training them again; "
                             "adds to the summary.json there")
    args = parser.parse_args()
    if not FASHION.exists():
        sys.exit(f"{FASHION} is absent: apt-get install dataset-fashion-mnist")
    from latentmcmc.io.torch_export import load_exported

    args.out.mkdir(parents=True, exist_ok=True)
    reference = FASHION / "t10k-images-idx3-ubyte.gz"  # refine reads it in the generator's range, [-1, 1]
    clf = load_exported(args.classifier / "classifier.pt2", "cpu", name="classifier")
    summary = args.out / "summary.json"
    results = json.loads(summary.read_text()) if args.reuse and summary.exists() else {}
    for entropy in args.entropy:
        term = f"{entropy}-{args.tag}" if args.tag else entropy
        ckpt = args.out / f"{term}.pt"
        if args.reuse:
            if not ckpt.exists():
                sys.exit(f"--reuse: {ckpt} is absent")
            row = results.setdefault(term, {})
        else:
            row = train(args, ckpt, entropy)
        results[term] = row
        for beta in args.betas or [0.0]:  # beta 0 with one step: the prior samples only
            out = args.out / f"{term}-beta{beta:g}"
            steps = ["--steps", "200", "--warmup", "200"] if args.betas else ["--steps", "1", "--warmup", "0"]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "latentmcmc", "refine", str(ckpt), "--chains", str(args.chains),
                            *steps, "--beta", str(beta), "--features",
                            str(args.classifier / "features.pt2"), "--classifier", str(args.classifier / "classifier.pt2"),
                            "--reference", str(reference), "-q", "--out", str(out)], check=True, capture_output=True)
            metrics = json.loads((out / "metrics.json").read_text())
            arrays = np.load(out / "samples.npz")
            before, after = (torch.from_numpy(arrays[k]) for k in ("x_before", "x_after"))
            row.setdefault("prior", {**metrics["quality"]["before"], **classes(clf, before)})
            if args.betas:
                row[f"mala beta {beta:g}"] = {**metrics["quality"]["after"], **classes(clf, after),
                                              "acceptance": metrics["acceptance"],
                                              "seconds": time.perf_counter() - t0, "load": os.getloadavg()[0]}
            summary.write_text(json.dumps(results, indent=1))  # kept as each run ends
        print(json.dumps({term: row}, indent=1), flush=True)
    keys = ("fd", "kid", "precision", "recall", "coverage", "classes", "class_kl")
    print("| entropy | samples | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for term, row in results.items():
        for name, q in row.items():
            if isinstance(q, dict):
                print(f"| {term} | {name} | " + " | ".join(
                    f"{q[k]:.3f}" if isinstance(q.get(k), float) else str(q.get(k)) for k in keys) + " |")
        if "train" in row:
            print(f"train {term}: {row['train_seconds']:.0f} s, load {row['load']:.1f}: {row['train']}")


if __name__ == "__main__":
    main()
