"""Importance weights: their effective sample size, the Pareto shape k of their tail (PSIS), and resampling.

How far to trust an importance-sampling estimate, such as AIS's ``log Z``, is read from the right tail of
the weights (Vehtari, Simpson, Gelman, Yao & Gabry 2024, "Pareto smoothed importance sampling"): a
generalized Pareto distribution is fitted to the largest weights (Zhang & Stephens 2009, empirical
Bayes with a weak prior on ``k``); when its shape ``k`` exceeds ``min(1 - 1/log10(n), 0.7)`` the
estimate's error is dominated by weights not yet seen and neither it nor its standard error can be
trusted, however many draws there are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["importance_ess", "pareto_k", "pareto_k_threshold", "systematic_resample", "log_mean_estimate",
           "split_disagreement"]


def importance_ess(log_weights: Tensor) -> float:
    """Kong's effective sample size ``(sum w)^2 / sum w^2`` of ``exp(log_weights)``."""
    w = log_weights.detach().double()
    return float(torch.exp(2 * torch.logsumexp(w, 0) - torch.logsumexp(2 * w, 0)))


def log_mean_estimate(log_weights: Tensor) -> tuple[float, float]:
    """``log mean(w)`` and its delta-method standard error ``sqrt(1/ESS - 1/n)`` (the AIS estimate of log Z)."""
    w = log_weights.detach().double()
    n = w.numel()
    ess = importance_ess(w)
    return float(torch.logsumexp(w, 0) - math.log(n)), math.sqrt(max(1.0 / ess - 1.0 / n, 0.0))


def split_disagreement(log_weights: Tensor) -> float:
    """How far the estimates of ``log mean(w)`` from the two halves of the weights disagree, in their joint error.

    ``|a - b| / sqrt(se_a^2 + se_b^2)`` for the halves' estimates and delta-method errors: about ``|N(0, 1)|``
    when the error bars hold; large when a half's estimate hangs on weights the other half did not draw.
    """
    w = log_weights.detach().double().reshape(-1)
    half = w.numel() // 2
    (a, se_a), (b, se_b) = log_mean_estimate(w[:half]), log_mean_estimate(w[half:2 * half])
    if not (math.isfinite(a) and math.isfinite(b)):
        return float("inf")
    return abs(a - b) / max(math.hypot(se_a, se_b), 1e-300)


def pareto_k_threshold(n: int) -> float:
    """``min(1 - 1 / log10(n), 0.7)``: the largest reliable Pareto ``k`` for ``n`` draws (Vehtari et al. 2024)."""
    return min(1.0 - 1.0 / math.log10(n), 0.7) if n > 10 else 0.0


def _gpd_shape(tail: np.ndarray) -> float:
    """Shape ``k`` of a generalized Pareto fit to the sorted exceedances ``tail`` (Zhang & Stephens 2009)."""
    n = tail.size
    m = 30 + int(n**0.5)
    b = 1.0 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    b = b / (3.0 * tail[int(n / 4 + 0.5) - 1]) + 1.0 / tail[-1]
    k = np.log1p(-b[:, None] * tail).mean(axis=1)
    profile = n * (np.log(-(b / k)) - k - 1.0)
    weights = 1.0 / np.exp(profile - profile[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    weights, b = weights[keep] / weights[keep].sum(), b[keep]
    k_post = np.log1p(-np.sum(b * weights) * tail).mean()
    return float((n * k_post + 10 * 0.5) / (n + 10))  # the weak prior: 10 pseudo-observations at k = 0.5


def pareto_k(log_weights: Tensor) -> float:
    """Pareto shape ``k`` of the right tail of the weights ``exp(log_weights)`` (``inf`` when it cannot be fitted).

    The tail is the largest ``ceil(min(n/5, 3 sqrt(n)))`` weights above the cutoff, as in PSIS.
    """
    x = log_weights.detach().double().cpu().numpy()
    n = x.size
    if n < 5 or np.isnan(x).any() or np.isposinf(x).any() or not np.isfinite(x).any():
        return float("inf")  # zero weights (-inf) are fine: they sit below the tail
    x = x - x.max()
    cut = -int(np.ceil(min(n / 5.0, 3 * n**0.5))) - 1
    cutoff = max(np.sort(x)[cut], np.log(np.finfo(float).tiny))
    tail = np.sort(x[x > cutoff])
    if tail.size <= 4:
        return float("inf")
    return _gpd_shape(np.exp(tail) - np.exp(cutoff))


def systematic_resample(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""Indices of a systematic resample of ``n`` items under normalised ``weights`` ``(n,)``.

    One uniform ``u ~ U(0, 1)`` places ``n`` evenly spaced points ``(u + i) / n`` on the cumulative
    weights; item ``j`` is picked once per point in its interval, so it appears ``floor(n w_j)`` or
    ``ceil(n w_j)`` times (Kitagawa 1996; Douc, Cappe & Moulines 2005).  Unbiased like multinomial
    resampling, with less added variance: equal weights give every item exactly once, where
    multinomial resampling keeps only about 63% of them (the rest duplicates), which lowers the
    diversity metrics of the output for no reason.
    """
    w = weights.detach().double().cpu()
    n = w.numel()
    u = torch.rand((), dtype=torch.float64, generator=generator)
    points = (u + torch.arange(n, dtype=torch.float64)) / n
    cumulative = torch.cumsum(w / w.sum(), 0)
    cumulative[-1] = 1.0  # no point may fall past the end by rounding
    return torch.searchsorted(cumulative, points, right=True).clamp(max=n - 1).to(weights.device)
