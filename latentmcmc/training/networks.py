"""Networks for the energy-GAN: generator G, critic (energy) U, and the MI network or encoder.

Two architectures (:data:`ARCHITECTURES`): ``mlp`` (every data shape; images are flattened) and ``conv``
(DCGAN-style for square images of 1 or 3 channels with an even side from 8 to 64).  Critics and the entropy networks
have no batch statistics, so every sample is processed on its own (the latent samplers refuse models
that couple chains); the convolutional generator has DCGAN's batch norm, which refinement runs in eval
mode.  Generators of images end in tanh (data scaled to [-1, 1]).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MLP", "Generator", "Critic", "StatisticsNetwork", "Encoder", "ConvGenerator", "ConvCritic", "CRITIC_NORMS",
           "ConvStatisticsNetwork", "ConvEncoder", "ConvFeatures", "conv_fits", "ARCHITECTURES"]


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


# ---------------------------------------------------------------------- convolutional networks for images
def _doublings(side: int) -> int:
    """How many times a ``side x side`` image halves to a side of at least 4: 8 -> 1, 28 -> 2, 32 -> 3, 64 -> 4."""
    k = 0
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        k += 1
    return k


def conv_fits(shape: tuple[int, ...]) -> bool:
    """Whether the convolutional networks take images of ``shape``: ``(C, H, W)``, C 1 or 3, H = W even in 8..64
    (halving at least once to a side >= 4)."""
    return (len(shape) == 3 and shape[0] in (1, 3) and shape[1] == shape[2] and 8 <= shape[1] <= 64
            and _doublings(shape[1]) >= 1)


class ConvFeatures(nn.Module):
    """``(n, C, H, W) -> (n, width * 2^(k-1) * s * s)``: ``k`` stride-2 convolutions with LeakyReLU, no batch statistics.

    The critic's (and the entropy networks') trunk: DCGAN's discriminator without batch norm, so that
    every sample is processed on its own (refinement runs chains as a batch).
    """

    def __init__(self, shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        channels, side = shape[0], shape[1]
        layers: list[nn.Module] = []
        for k in range(_doublings(side)):
            out = width * 2**k
            layers += [nn.Conv2d(channels, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            channels, side = out, side // 2
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.size = channels * side * side

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvGenerator(nn.Module):
    """``G(z)``: DCGAN-style: a linear map to ``(width 2^(k-1), s, s)``, ``k`` transposed convolutions with batch norm
    and ReLU doubling the side, a 3x3 convolution to ``C`` channels, tanh.

    Batch norm here is DCGAN's; in eval mode (refinement) it uses its running statistics, so chains stay independent.
    """

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        channels, side = data_shape[0], data_shape[1]
        k = _doublings(side)
        self.start = (width * 2 ** (k - 1), side // 2**k, side // 2**k)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)), nn.BatchNorm1d(math.prod(self.start)),
                                     nn.ReLU())
        layers: list[nn.Module] = []
        c = self.start[0]
        for j in range(k):
            out = max(width, c // 2) if j < k - 1 else width
            layers += [nn.ConvTranspose2d(c, out, 4, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        layers += [nn.Conv2d(c, channels, 3, 1, 1), nn.Tanh()]
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.project(z).reshape(z.shape[0], *self.start))


CRITIC_NORMS = {
    "none": "no normalisation of the critic's weights (the gradient penalty keeps it smooth)",
    "spectral": "spectral norm on every convolution and linear map of the critic (Miyato et al. 2018: each "
                "layer 1-Lipschitz); give --gp-weight 0 to train with it alone",
}
"""Weight normalisations of the convolutional critic (``TrainConfig.critic_norm``)."""


def normalise_critic(critic: nn.Module, norm: str) -> nn.Module:
    """``critic`` with the weight normalisation ``norm`` of :data:`CRITIC_NORMS` applied to its layers."""
    if norm not in CRITIC_NORMS:
        raise ValueError(f"unknown critic normalisation {norm!r}; choose one of {', '.join(CRITIC_NORMS)}")
    if norm == "spectral":
        for module in list(critic.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)
    return critic


class ConvCritic(nn.Module):
    """``U(x)``: :class:`ConvFeatures` then a linear map to one energy per image (lower = more like the data)."""

    def __init__(self, data_shape: tuple[int, ...], width: int, norm: str = "none") -> None:
        super().__init__()
        self.features = ConvFeatures(data_shape, width)
        self.head = nn.Linear(self.features.size, 1)
        normalise_critic(self, norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)).squeeze(1)


class ConvStatisticsNetwork(nn.Module):
    """``T(x, z)`` of the Deep-InfoMax term for images: convolutional features of ``x`` beside ``z``, then an MLP."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int) -> None:
        super().__init__()
        self.features = ConvFeatures(data_shape, width)
        self.head = MLP(self.features.size + latent_dim, 1, 4 * width, 1, "leaky")

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.head(torch.cat([self.features(x), z], 1)).squeeze(1)


class ConvEncoder(nn.Module):
    """``Enc(x)`` for images: convolutional features, then a linear map to the latent."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int, width: int) -> None:
        super().__init__()
        self.features = ConvFeatures(data_shape, width)
        self.head = nn.Linear(self.features.size, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


ARCHITECTURES = {
    "mlp": "MLPs with `depth` hidden layers of `width` units (images flattened)",
    "conv": "DCGAN-style convolutions (`width` channels in the first layer, doubling), square images of an even side 8-64, 1 or 3 "
            "channels",
}
"""The network families the trainer builds (``TrainConfig.arch``)."""
