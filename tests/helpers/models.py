"""Small models and run summaries shared by several test modules."""

from __future__ import annotations

import torch
from torch import nn

from latentmcmc import LatentEnergy


def small_latent_energy() -> LatentEnergy:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    critic = nn.Sequential(nn.Linear(2, 32), nn.Softplus(), nn.Linear(32, 1))
    return LatentEnergy(generator, critic, beta=2.0)


def moves(chains) -> torch.Tensor:
    """Which recorded steps moved each chain (a rejected proposal repeats the state exactly)."""
    return (chains.draws[:, 1:] != chains.draws[:, :-1]).any(-1)


class ConditionalGenerator(nn.Module):
    """``G(z, y)``: a class embedding added to the latent's features (a cGAN generator in miniature)."""

    def __init__(self, latent: int = 2, classes: int = 3, out: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, 16)
        self.body = nn.Sequential(nn.Linear(latent, 16), nn.Tanh())
        self.head = nn.Linear(16, out)

    def forward(self, z, y):
        return self.head(self.body(z) + self.embed(y))


class ProjectionCritic(nn.Module):
    """``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``: a projection discriminator (Miyato & Koyama 2018) in miniature."""

    def __init__(self, data: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(data, 16), nn.Softplus())
        self.psi = nn.Linear(16, 1)
        self.embed = nn.Embedding(classes, 16)

    def forward(self, x, y):
        h = self.phi(x)
        return self.psi(h).squeeze(1) + (self.embed(y) * h).sum(1)


class WithClass(nn.Module):
    """A conditional model with its condition fixed: ``x -> model(x, k)``."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x):
        return self.model(x, torch.full((x.shape[0],), self.k, dtype=torch.long, device=x.device))


def conditional_pair(seed: int = 0, latent: int = 2, classes: int = 3) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return ConditionalGenerator(latent, classes), ProjectionCritic(2, classes)
