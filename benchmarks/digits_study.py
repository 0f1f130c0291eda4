"""Digits and stacked digits: train, then compare prior samples, truncation and latent MALA refinement.

Stacked digits (three digits as three channels, 1,000 modes) are the offline analogue of
StackedMNIST: modes covered and KL of the mode histogram to uniform (use ``--samples 10000``: with
2,000 samples a perfect generator is expected to show only ~865 of the 1,000 modes).  Digits:
Frechet distance (FD) of the shipped classifier's features to the real digits.  With ``--seeds K``
every method is evaluated from K independent sets of starting latents and reported as mean and
standard error over them.  An existing checkpoint in OUT is reused instead of training.

    python benchmarks/digits_study.py --steps 6000 --out runs/digits --runs digits:dim --seeds 5
    python benchmarks/digits_study.py --steps 6000 --out runs/digits --samples 10000 \\
        --runs stacked-digits:dim stacked-digits:none
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from latentmcmc import MALA, LatentEnergy
from latentmcmc.checkpoint import load_models
from latentmcmc.metrics import digit_quality, load_digit_classifier
from latentmcmc.training import TrainConfig, Trainer, load_dataset

METRICS = ("modes", "kl", "fd")


def evaluate(generator, critic, latent_dim: int, reference, classifier, n: int, betas: list[float],
             seed: int) -> dict[str, dict]:
    """Quality of prior, truncated (psi 0.7) and MALA-refined samples from one set of ``n`` latents."""
    z0 = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        rows = {"prior": digit_quality(generator(z0), reference, classifier),
                "truncation psi=0.7": digit_quality(generator(0.7 * z0), reference, classifier)}
    for beta in betas:
        chains = MALA(LatentEnergy(generator, critic, beta=beta), eps=0.01).run(
            z0, steps=300, warmup=200, record="last", seed=seed, progress=False)
        with torch.no_grad():
            rows[f"MALA beta={beta}"] = {**digit_quality(generator(chains.last), reference, classifier),
                                         "acceptance": float(chains.acceptance_rate.mean()),
                                         "eps": float(chains.eps[0])}
    return rows


def study(data_name: str, entropy: str, steps: int, width: int, out: Path, n: int, betas: list[float],
          seeds: int) -> dict:
    ckpt = out / f"{data_name}-{entropy}.pt"
    t0 = time.perf_counter()
    trained = not ckpt.exists()
    if trained:
        Trainer(TrainConfig(data=data_name, entropy=entropy, width=width)).train(steps, ckpt, progress=False)
    minutes = (time.perf_counter() - t0) / 60 if trained else None
    generator, critic, config = load_models(ckpt)
    data = load_dataset(data_name)
    classifier = load_digit_classifier()
    reference = data.x[torch.randperm(len(data.x), generator=torch.Generator().manual_seed(2))[:n]]
    per_seed = [evaluate(generator, critic, config["latent_dim"], reference, classifier, n, betas, seed)
                for seed in range(1, seeds + 1)]
    rows = []
    for method in per_seed[0]:
        row = {"method": method}
        for key in per_seed[0][method]:
            values = [r[method][key] for r in per_seed]
            row[key] = statistics.fmean(values)
            if key in METRICS and seeds > 1:
                row[key + "_se"] = statistics.stdev(values) / math.sqrt(seeds)
        if seeds > 1 and method != "prior":  # paired with the prior samples of the same latents
            change = [r[method]["fd"] - r["prior"]["fd"] for r in per_seed]
            row["fd_change"], row["fd_change_se"] = statistics.fmean(change), statistics.stdev(change) / math.sqrt(seeds)
        rows.append(row)
    return {"data": data_name, "entropy": entropy, "steps": steps, "train_minutes": minutes, "samples": n,
            "seeds": seeds, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--out", default="runs/digits")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--runs", nargs="+", default=["stacked-digits:dim", "stacked-digits:none", "digits:dim"])
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.runs:
        data_name, entropy = spec.split(":")
        r = study(data_name, entropy, args.steps, args.width, out, args.samples, [1.0, 3.0], args.seeds)
        results.append(r)
        took = f"{r['train_minutes']:.1f} min" if r["train_minutes"] is not None else "existing checkpoint"
        print(f"\n== {data_name}, entropy={entropy}: {r['steps']} steps, width {args.width}, {took}; "
              f"{args.samples} samples x {args.seeds} seed(s)" + (" (mean ± se)" if args.seeds > 1 else ""))
        print(f"{'method':>20} {'modes':>13} {'KL':>15} {'FD':>15}")
        for row in r["rows"]:
            cells = [f"{row[k]:.{0 if k == 'modes' else 3}f}" + (f" ± {row[k + '_se']:.3f}" if k + "_se" in row else "")
                     for k in METRICS]
            extra = f"  eps {row['eps']:.3g}, acc {row['acceptance']:.2f}" if "eps" in row else ""
            if "fd_change" in row:
                extra += f"  FD - prior FD (paired): {row['fd_change']:+.3f} ± {row['fd_change_se']:.3f}"
            print(f"{row['method']:>20} {cells[0]:>13} {cells[1]:>15} {cells[2]:>15}{extra}")
    name = "results-" + "-".join(s.replace(":", "_") for s in args.runs) + ".json"
    (out / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
