"""Acceptance and divergence summaries of a run."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..chains import Chains

__all__ = ["AcceptanceSummary", "acceptance_summary", "running_acceptance"]


class AcceptanceSummary(NamedTuple):
    """Mean acceptance probability overall and per chain, divergences and frozen chains."""

    mean: float
    per_chain: Tensor  # (chains,)
    divergences: int
    divergences_per_chain: Tensor  # (chains,)
    frozen: int
    mh_mean: float | None  # unadjusted Langevin: acceptance MALA would have had


def acceptance_summary(chains: Chains) -> AcceptanceSummary:
    """Acceptance over every post-warm-up step (thinned or not), divergences and frozen chains."""
    mh = chains.mh_accept_rate
    return AcceptanceSummary(
        mean=float(chains.acceptance_rate.mean()),
        per_chain=chains.acceptance_rate,
        divergences=int(chains.divergences.sum()),
        divergences_per_chain=chains.divergences,
        frozen=int(chains.frozen.sum()),
        mh_mean=None if mh is None else float(mh.mean()),
    )


def running_acceptance(chains: Chains, window: int | None = None) -> Tensor:
    """Running mean of the recorded acceptance probabilities, ``(chains, draws)``.

    ``window=None``: cumulative mean from the first draw; ``window=k``: mean of the last ``k`` draws.
    """
    a = chains.accept_prob.to(torch.float64)
    csum = torch.cumsum(a, dim=1)
    n = torch.arange(1, a.shape[1] + 1, device=a.device, dtype=a.dtype)
    if window is None:
        return csum / n
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    shifted = torch.zeros_like(csum)
    shifted[:, window:] = csum[:, :-window]
    return (csum - shifted) / torch.clamp(n, max=window)
