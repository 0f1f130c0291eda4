"""A generator that has no critic: a VAE's decoder, refined with a critic fitted after the fact.

1. Train a small VAE on Fashion-MNIST (Debian's ``dataset-fashion-mnist``) or, without it, on scikit-learn's
   8x8 digits; keep its decoder ``G(z)``, ``z ~ N(0, I)`` (pixels in [0, 1]) and export it.
2. ``latentmcmc fit-critic``: a discriminator of the training images against ``G(z)``.
3. ``latentmcmc refine``: MALA on ``E(z) = -beta logit(G(z)) + |z|^2 / 2``.
4. Measure prior and refined samples against the held-out test images in a classifier's features (FD, KID,
   precision/recall, density/coverage, Inception Score) and draw both as image grids.

    python benchmarks/train_fashion_classifier.py --out runs/fashion   # the features and the classifier
    python examples/vae_fashion.py --out runs/fashion                  # then this

Everything goes into ``--out``: ``g.pt2``, the critic, ``reference.npz`` (test images), ``refined/`` and
``summary.json``.  ``--data digits`` runs the same on the digits with the shipped digit classifier.
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
from torch import nn

FASHION = Path("/usr/share/datasets/fashion-mnist")


class VAE(nn.Module):
    """An MLP VAE with a Bernoulli decoder: ``G(z) = sigmoid(dec(z))``, images ``(1, side, side)``."""

    def __init__(self, side: int, latent: int, width: int = 512) -> None:
        super().__init__()
        self.side, d = side, side * side
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, d))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).reshape(-1, 1, self.side, self.side)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(x).chunk(2, 1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.decoder(z)
        recon = nn.functional.binary_cross_entropy_with_logits(logits, x.reshape(x.shape[0], -1), reduction="sum")
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum()
        return (recon + kl) / x.shape[0]


class Decoder(nn.Module):
    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.generate(z)


class Rescaled(nn.Module):
    """``module(2 x - 1)``: a network trained on pixels in [-1, 1] reading pixels in [0, 1]."""

    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(2 * x - 1)


def load(data: str) -> tuple[torch.Tensor, torch.Tensor, Path | None]:
    """Training and test images in [0, 1] ``(n, 1, side, side)``, and the folder of features/classifier to use."""
    if data == "fashion":
        from latentmcmc.datafiles import read_data

        return (read_data(FASHION / "train-images-idx3-ubyte.gz"), read_data(FASHION / "t10k-images-idx3-ubyte.gz"),
                None)
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    return x[order[:1400]], x[order[1400:]], None


def export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},)), path)


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "latentmcmc", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("fashion", "digits"), default="fashion")
    parser.add_argument("--out", type=Path, default=Path("runs/fashion"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.data == "fashion" and not FASHION.is_dir():
        sys.exit(f"Fashion-MNIST is not installed ({FASHION}): apt-get install dataset-fashion-mnist, or --data digits")
    torch.manual_seed(args.seed)
    train, test, _ = load(args.data)
    side = train.shape[-1]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vae = VAE(side, args.latent)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    for _ in range(args.epochs):
        order = torch.randperm(train.shape[0])
        for i in range(0, train.shape[0], 128):
            loss = vae.loss(train[order[i:i + 128]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    vae_seconds = time.perf_counter() - t0
    export(Decoder(vae), torch.zeros(2, args.latent), out / "g.pt2")
    np.savez_compressed(out / "train.npz", x=train.numpy())
    np.savez_compressed(out / "reference.npz", x=test.numpy())
    if args.data == "digits":  # the shipped digit classifier's features and logits (it reads pixels in [-1, 1])
        from latentmcmc.metrics import load_digit_classifier

        classifier = load_digit_classifier()
        export(Rescaled(classifier.features), torch.zeros(2, 1, 8, 8), out / "features.pt2")
        export(Rescaled(classifier), torch.zeros(2, 1, 8, 8), out / "classifier.pt2")
    elif not (out / "features.pt2").exists():
        sys.exit(f"no {out}/features.pt2: run benchmarks/train_fashion_classifier.py --out {out} first")
    t1 = time.perf_counter()
    cli("--threads", "2", "fit-critic", "--generator", str(out / "g.pt2"), "--latent-shape", str(args.latent),
        "--real", str(out / "train.npz"), "--steps", str(args.fit_steps), "--seed", str(args.seed), "-q",
        "--out", str(out / "critic"))
    fit_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    cli("--threads", "2", "refine", "--generator", str(out / "g.pt2"), "--critic", str(out / "critic" / "critic.pt2"),
        "--critic-output", "logit", "--latent-shape", str(args.latent), "--beta", str(args.beta), "--chains",
        str(args.chains), "--steps", str(args.steps), "--warmup", str(args.steps), "--seed", str(args.seed),
        "--features", str(out / "features.pt2"), "--classifier", str(out / "classifier.pt2"), "--reference",
        str(out / "reference.npz"), "--record", "last", "--no-run-nc", "-q", "--out", str(out / "refined"))
    refine_seconds = time.perf_counter() - t2
    metrics = json.loads((out / "refined" / "metrics.json").read_text())
    fit = json.loads((out / "critic" / "fit.json").read_text())
    summary = {"data": args.data, "latent": args.latent, "epochs": args.epochs, "beta": args.beta,
               "vae_seconds": vae_seconds, "fit_seconds": fit_seconds, "refine_seconds": refine_seconds,
               "fit": {k: fit[k] for k in ("critic", "held_out", "step", "steps_run")},
               "quality": metrics["quality"], "acceptance": metrics["acceptance"],
               "load_average": os.getloadavg()[0]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
