"""25 Gaussians: train with each entropy term, then compare prior sampling, truncation and latent MALA.

Writes checkpoints to OUT and prints, per model: training time, and for SAMPLES samples the
high-quality fraction (within 3 sd of a mode), modes covered (>= 20 HQ samples per 10,000) and KL
of the mode histogram to uniform, for prior samples, truncated priors and latent MALA at several
beta.  (MALA on 10,000 chains through width-512 MLPs costs ~1.7 s a step on 2 cores; hence the
smaller default.)

    python benchmarks/gaussians25_study.py --steps 4000 --width 128 --out runs/g25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from latentmcmc import MALA, LatentEnergy
from latentmcmc.checkpoint import load_models
from latentmcmc.metrics import mixture_quality
from latentmcmc.training import TrainConfig, Trainer, load_dataset


def evaluate(ckpt: Path, n: int, betas: list[float], psis: list[float], warmup: int, steps: int, seed: int = 1) -> list[dict]:
    """Quality of ``n`` samples; a mode counts with 20 high-quality samples per 10,000 (as in the reference)."""
    generator, critic, config = load_models(ckpt)
    min_count = max(1, round(20 * n / 10_000))

    def quality(x):
        return mixture_quality(x, data.modes, data.mode_std, min_count=min_count)

    data = load_dataset(config["data"])
    z0 = torch.randn(n, config["latent_dim"], generator=torch.Generator().manual_seed(seed))
    rows = []
    with torch.no_grad():
        rows.append({"method": "prior", **quality(generator(z0))})
        for psi in psis:
            rows.append({"method": f"truncation psi={psi}", **quality(generator(psi * z0))})
    for beta in betas:
        chains = MALA(LatentEnergy(generator, critic, beta=beta), eps=0.01).run(
            z0, steps=steps, warmup=warmup, record="last", seed=seed, progress=False)
        with torch.no_grad():
            q = quality(generator(chains.last))
        rows.append({"method": f"MALA beta={beta}", **q, "eps": float(chains.eps[0]),
                     "acceptance": float(chains.acceptance_rate.mean())})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--entropy", nargs="+", default=["dim", "none", "encoder"])
    p.add_argument("--out", default="runs/g25")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--mala-steps", type=int, default=150)
    p.add_argument("--mala-warmup", type=int, default=150)
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    args = p.parse_args()
    out = Path(args.out)
    results = {}
    for entropy in args.entropy:
        ckpt = out / f"gaussians25-{entropy}.pt"
        t0 = time.perf_counter()
        trained = not ckpt.exists()
        if trained:
            config = TrainConfig(data="gaussians25", entropy=entropy, width=args.width, lr=args.lr)
            Trainer(config).train(args.steps, ckpt, progress=False)
        minutes = (time.perf_counter() - t0) / 60 if trained else None
        rows = evaluate(ckpt, args.samples, args.betas, [0.5, 0.7], args.mala_warmup, args.mala_steps)
        results[entropy] = {"train_minutes": minutes, "rows": rows}
        took = f"{minutes:.1f} min" if minutes is not None else f"existing checkpoint {ckpt}"
        print(f"\n== entropy={entropy}: {args.steps} generator steps, width {args.width}, lr {args.lr:g}, {took}")
        print(f"{'method':>22} {'HQ':>6} {'modes':>5} {'KL':>6}")
        for r in rows:
            extra = f"  eps {r['eps']:.3g}, acc {r['acceptance']:.2f}" if "eps" in r else ""
            print(f"{r['method']:>22} {r['hq_fraction']:6.3f} {r['modes']:5d} {r['kl']:6.3f}{extra}")
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
