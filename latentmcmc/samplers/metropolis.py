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
    Evaluations,
    KernelParams,
    SamplerState,
    StepInfo,
    acceptance_probability,
    broadcast_chains,
    divergent,
    evaluations_of,
)
from .legacy import as_proposer

__all__ = ["Proposal", "Proposer", "MetropolisHastings", "Uncalibrated", "mh_accept", "move", "params_of"]


class Proposal(NamedTuple):
    """A proposed state of every chain, its cached energy and gradient, and the MH log ratio of the move."""

    z: Tensor  # (chains, *latent_shape)
    energy: Tensor  # (chains,) E at z (the run's target, as in SamplerState)
    grad: Tensor  # (chains, *latent_shape)
    log_accept_ratio: Tensor  # (chains,) log [pi(z') q(z | z')] - log [pi(z) q(z' | z)]
    aux: Any = None  # passed on as StepInfo.aux (e.g. HMC's final momentum)
    carry: Any = None  # the state's next ``carry`` (None: unchanged), e.g. HMC's Halton index


@runtime_checkable
class Proposer(Protocol):
    """What an uncalibrated move provides: ``init``, ``draw_noise`` and a pure ``propose``.

    ``init_params(eps, z)`` is optional: a proposer that tunes nothing but eps takes :class:`KernelParams`.
    """

    def init(self, target: Any, z: Tensor, params: Any) -> SamplerState: ...

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: Any) -> Any: ...

    def propose(self, target: Any, state: SamplerState, params: Any, noise: Any) -> Proposal: ...


def params_of(obj: Any, eps: Tensor, z: Tensor) -> Any:
    """``obj.init_params(eps, z)``, or :class:`KernelParams` for a kernel or proposer that tunes nothing but eps."""
    make = getattr(obj, "init_params", None)
    return make(eps, z) if make is not None else KernelParams(eps)


def move(state: SamplerState, proposal: Proposal, take: Tensor) -> SamplerState:
    """Move the chains where ``take`` is true to the proposal; keep the others (and ``frozen``)."""
    take_b = broadcast_chains(take, state.z)
    grad = None if state.grad is None else torch.where(take_b, proposal.grad, state.grad)
    return SamplerState(
        torch.where(take_b, proposal.z, state.z),
        torch.where(take, proposal.energy, state.energy),
        grad,
        state.frozen,
        state.carry if proposal.carry is None else proposal.carry,
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


class _Composed:
    """What a kernel built from a proposer forwards to it: parameters, state, noise, cost, report."""

    def __init__(self, proposer: Proposer) -> None:
        self.proposer = as_proposer(proposer)

    @property
    def fusable(self) -> bool:
        """Whether steps can be compiled as a block (:mod:`.fused`): the proposer says so."""
        return bool(getattr(self.proposer, "fusable", False))

    def init_params(self, eps: Tensor, z: Tensor) -> Any:
        return params_of(self.proposer, eps, z)

    def init(self, target, z: Tensor, params: Any) -> SamplerState:
        return self.proposer.init(target, z, params)

    def report(self, params: Any) -> dict:
        """What the run's final parameters say beyond eps (HMC with ChEES: its trajectory length)."""
        report = getattr(self.proposer, "report", None)
        return report(params) if report is not None else {}


class MetropolisHastings(_Composed):
    """An exact kernel from a proposal: ``step = propose`` then :func:`mh_accept` (``calibrated = True``)."""

    calibrated = True

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: Any) -> MHNoise:
        inner = self.proposer.draw_noise(state, rng, params)
        return MHNoise(inner, torch.empty_like(state.energy).exponential_(generator=rng))

    def step(self, target, state: SamplerState, params: Any, noise: MHNoise) -> tuple[SamplerState, StepInfo]:
        proposal = self.proposer.propose(target, state, params, noise.proposal)
        return mh_accept(state, proposal, noise.exp_draw)

    def evaluations(self, noise: MHNoise) -> Evaluations:
        return evaluations_of(self.proposer, noise.proposal)


class Uncalibrated(_Composed):
    """Take every proposal that is not divergent (``calibrated = False``); frozen chains stay put.

    ``accept_prob`` is 1; ``log_accept_ratio`` is the ratio MH would have used.  Freezing a chain
    after a divergence is the driver's policy, not the kernel's.
    """

    calibrated = False

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: Any) -> Any:
        return self.proposer.draw_noise(state, rng, params)

    def evaluations(self, noise: Any) -> Evaluations:
        return evaluations_of(self.proposer, noise)

    def step(self, target, state: SamplerState, params: Any, noise: Any) -> tuple[SamplerState, StepInfo]:
        proposal = self.proposer.propose(target, state, params, noise)
        bad = divergent(proposal.log_accept_ratio)
        take = ~bad & ~state.frozen
        new_state = move(state, proposal, take)
        ones = torch.ones_like(state.energy)
        return new_state, StepInfo(ones, take, bad & ~state.frozen, proposal.log_accept_ratio, aux=proposal.aux)
