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
