"""Monte Carlo error helpers for the statistical tests.

Tolerances come from the Monte Carlo error, never from trial and error: chains are independent, so
the spread of per-chain averages across chains gives an exact standard error of their grand mean
(batch means with one batch per chain, valid however autocorrelated each chain is).  A family of
``m`` comparisons is judged at family-wise false-alarm rate ``alpha`` with the two-sided normal
quantile ``z = Phi^-1(1 - alpha / (2m))`` (Bonferroni).
"""

from __future__ import annotations

import math

import torch

ALPHA = 1e-3  # family-wise probability that a correct sampler fails one test


def z_threshold(m: int, alpha: float = ALPHA) -> float:
    return float(torch.special.ndtri(torch.tensor(1.0 - alpha / (2 * m), dtype=torch.float64)))


def across_chain_mean(per_chain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grand mean and its standard error from per-chain statistics ``(chains, ...)``."""
    n = per_chain.shape[0]
    return per_chain.mean(0), per_chain.std(0) / math.sqrt(n)


def z_scores(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """z-scores of the sample mean and of the second moments about the true mean, against the truth.

    ``draws`` is ``(chains, draws, d)``; returns a flat vector of ``d + d(d+1)/2`` z-scores.
    """
    x = draws.to(torch.float64) - mean.to(torch.float64)
    d = x.shape[-1]
    m_hat, m_se = across_chain_mean(x.mean(1))
    outer = torch.einsum("cti,ctj->cij", x, x) / x.shape[1]
    iu = torch.triu_indices(d, d)
    s_hat, s_se = across_chain_mean(outer[:, iu[0], iu[1]])
    truth = cov.to(torch.float64)[iu[0], iu[1]]
    return torch.cat([m_hat / m_se, (s_hat - truth) / s_se])


def assert_gaussian_moments(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, alpha: float = ALPHA) -> None:
    z = z_scores(draws, mean, cov)
    limit = z_threshold(z.numel(), alpha)
    worst = float(z.abs().max())
    assert worst < limit, f"moment z-score {worst:.2f} exceeds {limit:.2f} (family of {z.numel()})"


def random_gaussian(d: int, cond: float, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean and a covariance with eigenvalues log-spaced over ``cond`` and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.logspace(-0.5 * math.log10(cond), 0.5 * math.log10(cond), d, dtype=torch.float64)
    cov = q @ torch.diag(lam) @ q.T
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    return mean.to(dtype), cov.to(dtype)


def gaussian_energy(mean: torch.Tensor, cov: torch.Tensor):
    prec = torch.linalg.inv(cov)

    def energy(z: torch.Tensor) -> torch.Tensor:
        x = z - mean.to(z.dtype)
        return 0.5 * torch.einsum("ci,ij,cj->c", x, prec.to(z.dtype), x)

    return energy


def exact_draws(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(cov)
    return mean + torch.randn(n, mean.numel(), generator=g, dtype=mean.dtype) @ chol.T
