"""Sample-quality metrics: mode coverage and precision on 2-D mixtures; digit modes and Frechet distance."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mixture_quality", "kl_to_uniform", "frechet_distance"]


def kl_to_uniform(counts: Tensor) -> float:
    r"""``KL(p || uniform) = sum_k p_k log(K p_k)`` of a histogram over ``K`` modes (0 when even)."""
    counts = counts.to(torch.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts / total
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * counts.numel())).sum())


def mixture_quality(x: Tensor, modes: Tensor, std: float, n_std: float = 3.0, min_count: int = 20) -> dict[str, float]:
    """Quality of 2-D samples ``x`` from a mixture of isotropic Gaussians at ``modes`` with ``std``.

    ``hq_fraction``: share of samples within ``n_std`` standard deviations of their nearest mode;
    ``modes``: modes with at least ``min_count`` such samples; ``kl``: KL of the high-quality
    samples' mode histogram to uniform.
    """
    d = torch.cdist(x.detach().double().cpu(), modes.double().cpu())
    nearest = d.min(1)
    hq = nearest.values < n_std * std
    counts = torch.bincount(nearest.indices[hq], minlength=modes.shape[0])
    return {
        "hq_fraction": float(hq.double().mean()),
        "modes": int((counts >= min_count).sum()),
        "kl": kl_to_uniform(counts),
    }


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})`` between feature sets ``(n, d)``.

    The matrix square root is taken of the symmetric ``S_a^{1/2} S_b S_a^{1/2}`` by eigendecomposition,
    in float64.
    """
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    root_a = sqrtm_psd(s_a)
    cross = sqrtm_psd(root_a @ s_b @ root_a)
    value = (mu_a - mu_b).square().sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * torch.trace(cross)
    return float(value.clamp(min=0.0)) if math.isfinite(float(value)) else float("nan")
