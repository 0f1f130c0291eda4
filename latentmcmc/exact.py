"""Exact answers on 2-D latents by integrating ``exp(-E)`` on a grid: the ground truth samplers are measured against.

For a latent energy with the prior term, ``exp(-E)`` decays like ``exp(-|z|^2/2)`` outside the region
the critic reshapes, so a box of half-width 6 holds all but ~1e-8 of the prior's mass; the grid's
resolution must resolve the sharpest feature (at beta 20 the demo model's modes are about 0.05 wide;
the default 801 points per axis give steps of 0.015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GridTarget", "grid_target", "total_variation", "tv_noise_floor"]


@dataclass
class GridTarget:
    """``exp(-E)`` on a regular 2-D grid: the points, their probabilities and ``log Z`` relative to N(0, I)."""

    points: Tensor  # (m, 2) cell centres
    probs: Tensor  # (m,) float64, summing to 1
    log_z: float  # log of int exp(-E(z)) dz / (2 pi): the normaliser relative to the N(0, I) prior
    step: float

    def expectation(self, values: Tensor) -> Tensor:
        """``E[f(z)]`` under the grid target for ``values = f(points)`` of shape ``(m, ...)``."""
        return torch.einsum("m,m...->...", self.probs, values.double())


@torch.no_grad()
def grid_target(energy, half_width: float = 6.0, points_per_axis: int = 801, batch: int = 65536,
                device: str | torch.device = "cpu") -> GridTarget:
    """Integrate ``exp(-energy)`` over ``[-half_width, half_width]^2`` by the midpoint rule on a square grid."""
    axis = torch.linspace(-half_width, half_width, points_per_axis, dtype=torch.float64)
    step = float(axis[1] - axis[0])
    points = torch.cartesian_prod(axis, axis)
    energies = torch.cat([energy(points[i:i + batch].to(device=device, dtype=torch.float32)).double().cpu()
                          for i in range(0, points.shape[0], batch)])
    if not bool(torch.isfinite(energies).all()):
        raise ValueError("the energy is not finite everywhere on the grid")
    log_mass = torch.logsumexp(-energies, 0) + 2 * math.log(step)
    return GridTarget(points.float(), torch.softmax(-energies, 0), float(log_mass) - math.log(2 * math.pi), step)


def total_variation(p: Tensor, q: Tensor) -> float:
    """``sum |p - q| / 2`` of two histograms (each normalised here)."""
    p, q = p.double() / p.double().sum(), q.double() / q.double().sum()
    return float(0.5 * (p - q).abs().sum())


def tv_noise_floor(probs: Tensor, n: int, repeats: int = 400, seed: int = 0) -> tuple[float, float]:
    """Mean and 95th percentile of the TV distance between ``probs`` and the histogram of ``n`` exact draws.

    A sampler whose TV lies within this range cannot be told from exact sampling with ``n`` samples.
    """
    g = torch.Generator().manual_seed(seed)
    p = probs.double() / probs.double().sum()
    tvs = torch.tensor([total_variation(torch.bincount(torch.multinomial(p, n, replacement=True, generator=g),
                                                       minlength=p.numel()), p) for _ in range(repeats)])
    return float(tvs.mean()), float(torch.quantile(tvs, 0.95))
