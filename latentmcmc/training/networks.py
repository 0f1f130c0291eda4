"""Networks for the energy-GAN: generator G, critic (energy) U, and the MI network or encoder.

All are MLPs without batch statistics, so that every sample is processed on its own (the latent
samplers refuse models that couple chains).  Images are flattened; the generator ends in tanh
(data scaled to [-1, 1]).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MLP", "Generator", "Critic", "StatisticsNetwork", "Encoder"]


class MLP(nn.Sequential):
    """``Linear -> act -> ... -> Linear`` with ``depth`` hidden layers of ``width`` units."""

    def __init__(self, d_in: int, d_out: int, width: int, depth: int, act: str = "relu") -> None:
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU() if act == "relu" else nn.LeakyReLU(0.2)]
            d = width
        layers.append(nn.Linear(d, d_out))
        super().__init__(*layers)


class Generator(nn.Module):
    """``G(z)``: latent ``(n, latent_dim)`` -> data ``(n, *data_shape)``; tanh output for images."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], width: int, depth: int = 3) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = MLP(latent_dim, math.prod(data_shape), width, depth, "relu")
        self.squash = len(self.data_shape) > 1

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(z)
        if self.squash:
            x = torch.tanh(x)
        return x.reshape(z.shape[0], *self.data_shape)


class Critic(nn.Module):
    """``U(x)``: data -> energy ``(n,)`` (lower = more like the data)."""

    def __init__(self, data_shape: tuple[int, ...], width: int, depth: int = 3) -> None:
        super().__init__()
        self.net = MLP(math.prod(data_shape), 1, width, depth, "leaky")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(1)


class StatisticsNetwork(nn.Module):
    """``T(x, z)`` of the Deep-InfoMax (Jensen-Shannon) mutual-information estimator -> logits ``(n,)``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int, depth: int = 3) -> None:
        super().__init__()
        self.net = MLP(math.prod(data_shape) + latent_dim, 1, width, depth, "leaky")

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([x.reshape(x.shape[0], -1), z], 1)).squeeze(1)


class Encoder(nn.Module):
    """``Enc(x)``: data -> latent, for the reconstruction bound ``|z - Enc(G(z))|^2``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int, depth: int = 3) -> None:
        super().__init__()
        self.net = MLP(math.prod(data_shape), latent_dim, width, depth, "leaky")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))
