"""Digits and stacked digits: train, then compare prior samples with latent MALA refinement.

Stacked digits (three digits as three channels, 1,000 modes) are the offline analogue of
StackedMNIST: modes covered and KL of the mode histogram to uniform.  Digits: Frechet distance of
the shipped classifier's features to the real digits.  Reports both before and after refinement.

    python benchmarks/digits_study.py --steps 3000 --out runs/digits
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latentmcmc import MALA, LatentEnergy
from latentmcmc.checkpoint import load_models
from latentmcmc.metrics import digit_quality, load_digit_classifier
from latentmcmc.training import TrainConfig, Trainer, load_dataset


def study(data_name: str, entropy: str, steps: int, width: int, out: Path, n: int, betas: list[float]) -> dict:
    ckpt = out / f"{data_name}-{entropy}.pt"
    t0 = time.perf_counter()
    trained = not ckpt.exists()
    if trained:
        Trainer(TrainConfig(data=data_name, entropy=entropy, width=width)).train(steps, ckpt, progress=False)
    minutes = (time.perf_counter() - t0) / 60 if trained else None
    generator, critic, config = load_models(ckpt)
    data = load_dataset(data_name)
    clf = load_digit_classifier()
    reference = data.x[torch.randperm(len(data.x), generator=torch.Generator().manual_seed(2))[:n]]
    z0 = torch.randn(n, config["latent_dim"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rows = [{"method": "prior", **digit_quality(generator(z0), reference, clf)}]
        rows.append({"method": "truncation psi=0.7", **digit_quality(generator(0.7 * z0), reference, clf)})
    for beta in betas:
        chains = MALA(LatentEnergy(generator, critic, beta=beta), eps=0.01).run(
            z0, steps=300, warmup=200, record="last", seed=1, progress=False)
        with torch.no_grad():
            q = digit_quality(generator(chains.last), reference, clf)
        rows.append({"method": f"MALA beta={beta}", **q, "acceptance": float(chains.acceptance_rate.mean()),
                     "eps": float(chains.eps[0])})
    return {"data": data_name, "entropy": entropy, "steps": steps, "train_minutes": minutes, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--out", default="runs/digits")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--runs", nargs="+", default=["stacked-digits:dim", "stacked-digits:none", "digits:dim"])
    args = p.parse_args()
    out = Path(args.out)
    results = []
    for spec in args.runs:
        data_name, entropy = spec.split(":")
        r = study(data_name, entropy, args.steps, args.width, out, args.samples, [1.0, 3.0])
        results.append(r)
        took = f"{r['train_minutes']:.1f} min" if r["train_minutes"] is not None else "existing checkpoint"
        print(f"\n== {data_name}, entropy={entropy}: {r['steps']} steps, width {args.width}, {took}")
        print(f"{'method':>20} {'modes':>6} {'KL':>7} {'FD':>8}")
        for row in r["rows"]:
            extra = f"  eps {row['eps']:.3g}, acc {row['acceptance']:.2f}" if "eps" in row else ""
            print(f"{row['method']:>20} {row['modes']:6d} {row['kl']:7.3f} {row['fd']:8.2f}{extra}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
