"""A built-in refinement problem that needs no files: a fixed generator and an exact ring critic.

The critic is the energy of the "ring of 8 Gaussians" data density, ``U(x) = -log sum_k N(x; mu_k,
s^2 I)`` (centres on the unit circle); the generator is a fixed smooth map of a 2-D latent that
spreads the prior's mass over the plane, like an under-trained GAN.  Refining its latents with MALA
on ``E(z) = beta U(G(z)) + 0.5 |z|^2`` moves samples onto the modes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .energy import LatentEnergy
from .samplers import MALA

__all__ = ["RingCritic", "SmoothGenerator", "ring_modes", "run_demo"]


def ring_modes(n: int = 8, radius: float = 1.0) -> Tensor:
    angle = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return radius * torch.stack([angle.cos(), angle.sin()], 1)


class RingCritic(nn.Module):
    """``U(x) = -logsumexp_k(-|x - mu_k|^2 / (2 s^2))``: the exact energy of a ring of Gaussians."""

    def __init__(self, n: int = 8, radius: float = 1.0, std: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("modes", ring_modes(n, radius).float())
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        d2 = (x[:, None, :] - self.modes.to(x.dtype)[None]).square().sum(-1)
        return -torch.logsumexp(-d2 / (2 * self.std**2), dim=1)


class SmoothGenerator(nn.Module):
    """``G(z) = 0.8 z + 0.2 tanh(W z)``, a fixed smooth map of the plane (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(2, 2, generator=g))

    def forward(self, z: Tensor) -> Tensor:
        return 0.8 * z + 0.2 * torch.tanh(z @ self.w.to(z.dtype).T)


def run_demo(chains: int = 2000, steps: int = 300, warmup: int = 200, beta: float = 1.0, seed: int = 0,
             device: str = "cpu", progress: bool | None = None) -> dict:
    """Refine the built-in generator's latents with MALA; return the run and before/after quality."""
    from .diagnostics import ess, rhat
    from .metrics import mixture_quality

    critic, generator = RingCritic().to(device), SmoothGenerator().to(device)
    energy = LatentEnergy(generator, critic, beta=beta)
    z0 = torch.randn(chains, 2, generator=torch.Generator().manual_seed(seed)).to(device)
    run = MALA(energy, eps=0.01).run(z0, steps=steps, warmup=warmup, seed=seed, progress=progress)
    with torch.no_grad():
        before = mixture_quality(generator(z0), critic.modes, critic.std)
        after = mixture_quality(generator(run.last), critic.modes, critic.std)
    return {
        "chains": run,
        "before": before,
        "after": after,
        "ess_bulk": ess(run.draws),
        "ess_tail": ess(run.draws, method="tail"),
        "rhat": rhat(run.draws),
        "ess_bulk_energy": ess(run.energy),
    }
