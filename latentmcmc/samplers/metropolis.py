"""Calibration by composition: one Metropolis-Hastings accept for every calibrated kernel.

A *proposal* (TFP's "uncalibrated" kernel) draws a candidate state for every chain and computes the
Metropolis-Hastings log ratio of the move.  :class:`MetropolisHastings` turns a proposal into an exact
kernel by accepting with probability ``min(1, exp(log_ratio))``; :class:`Uncalibrated` takes every
proposal that is not divergent (unadjusted Langevin).  The accept itself is :func:`mh_accept`, the
one place the rule is written (after BlackJAX's ``static_binomial_sampling``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from .kernel import (
    GRADIENT_STEP,
    Evaluations,
    SamplerState,
    StepInfo,
    acceptance_probability,
    broadcast_chains,
    divergent,
)

__all__ = ["Proposal", "Proposer", "MetropolisHastings", "Uncalibrated", "mh_accept", "move"]


class Proposal(NamedTuple):
    """A proposed state of every chain, its cached energy and gradient, and the MH log ratio of the move."""

    z: Tensor  # (chains, *latent_shape)
    energy: Tensor  # (chains,) E at z (the run's target, as in SamplerState)
    grad: Tensor  # (chains, *latent_shape)
    log_accept_ratio: Tensor  # (chains,) log [pi(z') q(z | z')] - log [pi(z) q(z' | z)]
    aux: Any = None  # passed on as StepInfo.aux (e.g. HMC's final momentum)


@runtime_checkable
class Proposer(Protocol):
    """What an uncalibrated move provides: ``init``, ``draw_noise`` and a pure ``propose``."""

    def init(self, target: Any, z: Tensor) -> SamplerState: ...

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None) -> Any: ...

    def propose(self, target: Any, state: SamplerState, eps: Tensor, noise: Any) -> Proposal: ...


def move(state: SamplerState, proposal: Proposal, take: Tensor) -> SamplerState:
    """Move the chains where ``take`` is true to the proposal; keep the others (and ``frozen``)."""
    take_b = broadcast_chains(take, state.z)
    grad = None if state.grad is None else torch.where(take_b, proposal.grad, state.grad)
    return SamplerState(
        torch.where(take_b, proposal.z, state.z),
        torch.where(take, proposal.energy, state.energy),
        grad,
        state.frozen,
    )


def mh_accept(state: SamplerState, proposal: Proposal, exp_draw: Tensor) -> tuple[SamplerState, StepInfo]:
    r"""Accept each chain's proposal with probability ``min(1, exp(log_ratio))``.

    ``exp_draw`` is ``-log U`` for ``U ~ Uniform(0, 1)`` (an Exponential(1) draw per chain): the move is
    accepted when ``log_ratio > -exp_draw``, i.e. ``U < exp(log_ratio)``.  A non-finite log ratio is
    rejected; a log ratio below ``-1000`` (rejected by the test itself) or non-finite counts as a
    divergence.
    """
    log_ratio = proposal.log_accept_ratio
    finite = torch.isfinite(log_ratio)
    accepted = finite & (log_ratio > -exp_draw)
    new_state = move(state, proposal, accepted)
    return new_state, StepInfo(acceptance_probability(log_ratio), accepted, divergent(log_ratio, finite), log_ratio,
                               aux=proposal.aux)


class MHNoise(NamedTuple):
    proposal: Any  # the proposer's noise
    exp_draw: Tensor  # (chains,) Exponential(1) draws for the accept test


class MetropolisHastings:
    """An exact kernel from a proposal: ``step = propose`` then :func:`mh_accept` (``calibrated = True``)."""

    calibrated = True

    def __init__(self, proposer: Proposer) -> None:
        self.proposer = proposer

    @property
    def fusable(self) -> bool:
        """Whether steps can be compiled as a block (:mod:`.fused`): the proposer says so."""
        return bool(getattr(self.proposer, "fusable", False))

    def init(self, target, z: Tensor) -> SamplerState:
        return self.proposer.init(target, z)

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None) -> MHNoise:
        inner = self.proposer.draw_noise(state, rng)
        return MHNoise(inner, torch.empty_like(state.energy).exponential_(generator=rng))

    def step(self, target, state: SamplerState, eps: Tensor, noise: MHNoise) -> tuple[SamplerState, StepInfo]:
        proposal = self.proposer.propose(target, state, eps, noise.proposal)
        return mh_accept(state, proposal, noise.exp_draw)

    def evaluations(self, noise: MHNoise) -> Evaluations:
        return _evaluations(self.proposer, noise.proposal)

    def state_dict(self):
        """The proposer's own mutable state, if any (for checkpoints)."""
        return self.proposer.state_dict() if hasattr(self.proposer, "state_dict") else None

    def load_state_dict(self, d) -> None:
        if d is not None and hasattr(self.proposer, "load_state_dict"):
            self.proposer.load_state_dict(d)


def _evaluations(proposer, noise) -> Evaluations:
    cost = getattr(proposer, "evaluations", None)
    return cost(noise) if cost is not None else GRADIENT_STEP


class Uncalibrated:
    """Take every proposal that is not divergent (``calibrated = False``); frozen chains stay put.

    ``accept_prob`` is 1; ``log_accept_ratio`` is the ratio MH would have used.  Freezing a chain
    after a divergence is the driver's policy, not the kernel's.
    """

    calibrated = False

    def __init__(self, proposer: Proposer) -> None:
        self.proposer = proposer

    fusable = MetropolisHastings.fusable

    def init(self, target, z: Tensor) -> SamplerState:
        return self.proposer.init(target, z)

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None) -> Any:
        return self.proposer.draw_noise(state, rng)

    def evaluations(self, noise: Any) -> Evaluations:
        return _evaluations(self.proposer, noise)

    def state_dict(self):
        return self.proposer.state_dict() if hasattr(self.proposer, "state_dict") else None

    def load_state_dict(self, d) -> None:
        if d is not None and hasattr(self.proposer, "load_state_dict"):
            self.proposer.load_state_dict(d)

    def step(self, target, state: SamplerState, eps: Tensor, noise: Any) -> tuple[SamplerState, StepInfo]:
        proposal = self.proposer.propose(target, state, eps, noise)
        bad = divergent(proposal.log_accept_ratio)
        take = ~bad & ~state.frozen
        new_state = move(state, proposal, take)
        ones = torch.ones_like(state.energy)
        return new_state, StepInfo(ones, take, bad & ~state.frozen, proposal.log_accept_ratio, aux=proposal.aux)
