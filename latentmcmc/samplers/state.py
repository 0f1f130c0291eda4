"""The state a sampler carries between steps and what one step reports."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

DIVERGENCE_THRESHOLD = 1000.0
"""A step is divergent when its Metropolis-Hastings log ratio is non-finite or below minus this
(Stan's threshold on the energy error): the discretisation has broken down there."""


def acceptance_probability(log_accept_ratio: Tensor) -> Tensor:
    """``min(1, exp(log_ratio))`` per chain, 0 where the log ratio is NaN or infinite."""
    r = log_accept_ratio
    return torch.where(torch.isfinite(r), r.clamp(max=0.0).exp(), torch.zeros_like(r))


def divergent(log_accept_ratio: Tensor, finite: Tensor | None = None) -> Tensor:
    """``(chains,)`` bool: the log ratio is NaN, infinite, or below ``-DIVERGENCE_THRESHOLD``.

    ``finite`` (``isfinite(log_accept_ratio)``) may be passed when the caller already has it.
    """
    if finite is None:
        finite = torch.isfinite(log_accept_ratio)
    return ~(finite & (log_accept_ratio > -DIVERGENCE_THRESHOLD))


class SamplerState(NamedTuple):
    """Current position of every chain with its cached energy and gradient.

    ``energy`` and ``grad`` are those of the sampler's target at ``z`` (for annealed samplers, the
    final target at level 1), so a step costs one forward and one backward pass.  ``frozen`` marks
    chains that stopped after a divergent step (unadjusted Langevin only).
    """

    z: Tensor  # (chains, *latent_shape)
    energy: Tensor  # (chains,)
    grad: Tensor  # (chains, *latent_shape)
    frozen: Tensor  # (chains,) bool


class StepInfo(NamedTuple):
    """What one transition did, per chain.

    ``log_accept_ratio`` is the Metropolis-Hastings log ratio of the Langevin proposal; unadjusted
    Langevin computes it too (its would-be acceptance drives step-size adaptation).
    """

    accept_prob: Tensor  # (chains,) min(1, exp(log_accept_ratio)); 1 for Langevin
    accepted: Tensor  # (chains,) bool, the chain moved
    diverging: Tensor  # (chains,) bool, the proposal was divergent (see :func:`divergent`)
    log_accept_ratio: Tensor  # (chains,)
