"""A GAN trained the usual way, elsewhere: a DCGAN-style generator and a discriminator ending in a Sigmoid.

Trains both on scikit-learn's 8x8 digits with the standard non-saturating BCE objective (Goodfellow et
al. 2014; DCGAN's architecture scaled to 8x8: a transposed convolution with batch norm in the generator,
convolutions with LeakyReLU and dropout 0.3 in the discriminator, Adam 2e-4 (0.5, 0.999), batch 64;
without the dropout the discriminator memorised the 1,797 digits and the generator collapsed to 1-2
of them), then exports everything ``latentmcmc refine`` needs with ``torch.export``, as one would from
any GAN code base:

* ``g.pt2``: the generator, latent 32 -> a *flat* 64-vector (so ``--data-shape 1,8,8`` is needed to see digits);
* ``d.pt2``: the discriminator, flat 64-vector -> P(real) in (0, 1) (``--critic-output probability``);
* ``features.pt2`` and ``classifier.pt2``: latentmcmc's shipped digit classifier, its 128-d features and
  its logits (``--features``, ``--classifier``);
* ``reference.npz``: the 1,797 real digits as ``x`` of shape (n, 1, 8, 8) (``--reference``).

    python examples/dcgan_digits.py --steps 3000 --out runs/dcgan
    latentmcmc refine --generator runs/dcgan/g.pt2 --critic runs/dcgan/d.pt2 --latent-shape 32 \\
        --critic-output probability --data-shape 1,8,8 --features runs/dcgan/features.pt2 \\
        --classifier runs/dcgan/classifier.pt2 --reference runs/dcgan/reference.npz --track-every 25 --out refined
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LATENT = 32


class Generator(nn.Module):
    """DCGAN-style: z -> 64 x 4 x 4 -> 32 x 8 x 8 -> 1 x 8 x 8 (tanh), returned flat."""

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(LATENT, 64 * 4 * 4), nn.BatchNorm1d(64 * 4 * 4), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 1, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z).reshape(-1, 64, 4, 4)).flatten(1)


class Discriminator(nn.Module):
    """Flat 8x8 image -> 32 x 8 x 8 -> 64 x 4 x 4 -> P(real), with a final Sigmoid as most published ones."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(0.3),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, 8, 8)).squeeze(1)


class Features(nn.Module):
    def __init__(self, classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def train(steps: int, seed: int = 0, batch: int = 64) -> tuple[nn.Module, nn.Module]:
    from latentmcmc.training import load_dataset

    torch.manual_seed(seed)
    data = load_dataset("digits").x.reshape(-1, 64)
    g, d = Generator(), Discriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(steps):
        real = data[torch.randint(0, data.shape[0], (batch,))]
        fake = g(torch.randn(batch, LATENT))
        loss_d = F.binary_cross_entropy(d(real), torch.ones(batch)) + F.binary_cross_entropy(d(fake.detach()),
                                                                                          torch.zeros(batch))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy(d(fake), torch.ones(batch))  # the non-saturating generator loss
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return g.eval(), d.eval()


def export(module: nn.Module, example: torch.Tensor | tuple, path: Path) -> None:
    """``torch.export`` with the first dimension (the batch) of every input dynamic."""
    example = example if isinstance(example, tuple) else (example,)
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module.eval(), example, dynamic_shapes=tuple({0: batch} for _ in example)),
                      path)


def export_measures(out: Path) -> None:
    """What --features, --classifier and --reference take: the shipped digit classifier's features and logits, the
    1,797 real digits."""
    from latentmcmc.metrics import load_digit_classifier
    from latentmcmc.training import load_dataset

    clf = load_digit_classifier()
    export(Features(clf), torch.randn(4, 1, 8, 8), out / "features.pt2")
    export(clf, torch.randn(4, 1, 8, 8), out / "classifier.pt2")
    np.savez_compressed(out / "reference.npz", x=load_dataset("digits").x.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/dcgan"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    g, d = train(args.steps, args.seed)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s")
    export(g, torch.randn(4, LATENT), args.out / "g.pt2")
    export(d, torch.randn(4, 64), args.out / "d.pt2")
    export_measures(args.out)
    print(f"wrote {args.out}/ (g.pt2, d.pt2, features.pt2, classifier.pt2, reference.npz)")


if __name__ == "__main__":
    main()
