"""A class-conditional GAN trained the usual way: a conditional DCGAN and a projection discriminator.

Trains both on scikit-learn's 8x8 digits with their labels, as cGANs are trained (Miyato & Koyama 2018;
the SNGAN/BigGAN recipe scaled to 8x8): the generator ``G(z, y)`` feeds a class embedding beside the
latent into a DCGAN-style stack (a transposed convolution with batch norm); the discriminator
``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`` has spectral norm on every layer and outputs a logit;
hinge loss, Adam 2e-4 (0.0, 0.9), batch 64, one discriminator step per generator step.  Then it exports
what ``latentmcmc refine --classes`` needs with ``torch.export``, two inputs per model:

* ``g.pt2``: ``(z, y) -> `` a flat 64-vector in [-1, 1] (latent 32; ``--data-shape 1,8,8`` to see digits);
* ``d.pt2``: ``(x, y) -> `` the projection logit (``--critic-output logit``);
* ``features.pt2``, ``classifier.pt2``, ``reference.npz``: as in ``examples/dcgan_digits.py``.

    python examples/cdcgan_digits.py --steps 4000 --out runs/cdcgan
    latentmcmc refine --generator runs/cdcgan/g.pt2 --critic runs/cdcgan/d.pt2 --latent-shape 32 \\
        --critic-output logit --data-shape 1,8,8 --classes 0-9 --chains 2000 \\
        --features runs/cdcgan/features.pt2 --classifier runs/cdcgan/classifier.pt2 \\
        --reference runs/cdcgan/reference.npz --out refined-classes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from dcgan_digits import export, export_measures
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

LATENT, CLASSES = 32, 10


class ConditionalGenerator(nn.Module):
    """``(z, y) -> `` flat 8x8 digit of class ``y``: [z, embed(y)] -> 64 x 4 x 4 -> 32 x 8 x 8 -> 1 x 8 x 8 (tanh)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(CLASSES, 16)
        self.project = nn.Sequential(nn.Linear(LATENT + 16, 64 * 4 * 4), nn.BatchNorm1d(64 * 4 * 4), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 1, 3, 1, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(y)], 1))
        return self.up(h.reshape(-1, 64, 4, 4)).flatten(1)


class ProjectionDiscriminator(nn.Module):
    """``(x, y) -> psi(phi(x)) + <embed(y), phi(x)>``: a realness logit, spectral norm on every layer."""

    def __init__(self) -> None:
        super().__init__()
        self.phi = nn.Sequential(
            spectral_norm(nn.Conv2d(1, 32, 3, 1, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(32, 64, 4, 2, 1)), nn.LeakyReLU(0.2),
            nn.Flatten(), spectral_norm(nn.Linear(64 * 4 * 4, 128)), nn.LeakyReLU(0.2),
        )
        self.psi = spectral_norm(nn.Linear(128, 1))
        self.embed = spectral_norm(nn.Embedding(CLASSES, 128))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.phi(x.reshape(-1, 1, 8, 8))
        return self.psi(h).squeeze(1) + (self.embed(y) * h).sum(1)


def train(steps: int, seed: int = 0, batch: int = 64) -> tuple[nn.Module, nn.Module]:
    from latentmcmc.training import load_dataset

    torch.manual_seed(seed)
    digits = load_dataset("digits")
    data, labels = digits.x.reshape(-1, 64), digits.labels.long()
    g, d = ConditionalGenerator(), ProjectionDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,))
        real, y = data[idx], labels[idx]
        y_fake = torch.randint(0, CLASSES, (batch,))
        fake = g(torch.randn(batch, LATENT), y_fake)
        loss_d = F.relu(1 - d(real, y)).mean() + F.relu(1 + d(fake.detach(), y_fake)).mean()  # hinge loss
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = -d(fake, y_fake).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return g.eval(), d.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/cdcgan"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    g, d = train(args.steps, args.seed)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s")
    y = torch.zeros(4, dtype=torch.long)
    export(g, (torch.randn(4, LATENT), y), args.out / "g.pt2")
    export(d, (torch.randn(4, 64), y), args.out / "d.pt2")
    export_measures(args.out)
    print(f"wrote {args.out}/ (g.pt2, d.pt2, features.pt2, classifier.pt2, reference.npz)")


if __name__ == "__main__":
    main()
