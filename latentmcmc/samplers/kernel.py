"""The kernel contract: what every transition kernel is, carries and reports.

A kernel is a small pure step (after BlackJAX's ``init``/``step`` pairs and TFP's transition kernels).
Its constructor fixes its options (HMC's number of leapfrog steps, i-SIR's candidates); what warm-up
tunes is a *value*, the kernel's parameters, that the driver passes in and keeps:

* ``init_params(eps, z) -> params``: the parameters a run starts from, a NamedTuple whose first field is
  ``eps`` ``(chains,)`` (:class:`KernelParams` for kernels that tune nothing else; HMC adds its
  trajectory length, FlEx2MCMC its flow's tensors);
* ``init(target, z, params) -> state``: the state of every chain at ``z`` (for gradient kernels:
  energy and gradient, one forward and one backward pass);
* ``draw_noise(state, rng, params) -> noise``: every random number one step needs, drawn from the
  run's ``torch.Generator`` (so a seed fixes the draws, and a fused block can take pre-drawn noise);
* ``step(target, state, params, noise) -> (state, info)``: a function of its arguments only (the
  kernel object is never changed by a step or a run).

``calibrated`` says whether the step leaves ``exp(-E)`` invariant (a Metropolis-Hastings kernel) or
not (unadjusted Langevin), as TFP's ``is_calibrated``.  Kernels know nothing of warm-up, step-size
adaptation, annealing, recording, progress or interrupts: the driver (:mod:`.driver`) owns those.
Annealing reaches a kernel only as a different target (:mod:`.tempering`).  This module imports
nothing but torch: the contract layer has no I/O.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..evaluations import Evaluations

__all__ = [
    "Kernel", "KernelParams", "SamplerState", "StepInfo", "Evaluations", "GRADIENT_STEP", "DIVERGENCE_THRESHOLD",
    "acceptance_probability", "divergent", "broadcast_chains", "gradient_state", "evaluations_of",
]


class KernelParams(NamedTuple):
    """The parameters of a kernel that tunes nothing but its step size: ``eps`` ``(chains,)``."""

    eps: Tensor

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


def broadcast_chains(per_chain: Tensor, like: Tensor) -> Tensor:
    """A ``(chains,)`` tensor viewed as ``(chains, 1, ..., 1)`` to broadcast against ``like``."""
    return per_chain.reshape((-1,) + (1,) * (like.dim() - 1))


def gradient_state(target, z: Tensor) -> "SamplerState":
    """The state of gradient kernels at ``z``: energy and gradient of ``target`` (one forward and one backward pass)."""
    energy, grad = target.value_and_grad(z)
    return SamplerState(z.clone(), energy, grad, torch.zeros(z.shape[0], dtype=torch.bool, device=z.device))


def evaluations_of(kernel, noise) -> Evaluations:
    """The model passes per chain of ``kernel``'s step with ``noise``: its ``evaluations(noise)``, else one of each."""
    cost = getattr(kernel, "evaluations", None)
    return cost(noise) if cost is not None else GRADIENT_STEP


class SamplerState(NamedTuple):
    """Current position of every chain with its cached energy and gradient.

    ``energy`` and ``grad`` are those of the run's target ``E`` at ``z`` (also while annealing: a
    tempered target derives its own values from them without another model call), so a gradient
    step costs one forward and one backward pass.  A kernel that needs no gradient (i-SIR) keeps
    ``grad=None``.  ``frozen`` marks chains stopped by the driver after a divergent step of an
    uncalibrated kernel.  ``carry`` is what a kernel threads from one step to the next besides the
    position (HMC with ChEES: the index of its Halton jitter, as BlackJAX's dynamic HMC keeps it in its
    state); None for most kernels.
    """

    z: Tensor  # (chains, *latent_shape)
    energy: Tensor  # (chains,)
    grad: Tensor | None  # (chains, *latent_shape), None for gradient-free kernels
    frozen: Tensor  # (chains,) bool
    carry: Any = None  # plain data a kernel threads through its steps (HMC's Halton index)


class StepInfo(NamedTuple):
    """What one transition did, per chain.

    ``log_accept_ratio`` is the Metropolis-Hastings log ratio of the step's proposal; an uncalibrated
    kernel computes it too (the acceptance MH would have had drives its step-size adaptation).
    ``accept_prob`` is what step-size adaptation steers (for Ex2MCMC: its local MALA steps);
    ``jump_prob`` is the probability that a global move (i-SIR) left the current point, None for
    local kernels.  ``aux`` carries what a kernel's warm-up adapter needs (HMC's final momentum for
    ChEES, i-SIR's candidates for a flow fit); the driver does not read it.
    """

    accept_prob: Tensor  # (chains,) min(1, exp(log_accept_ratio)); 1 for an uncalibrated kernel
    accepted: Tensor  # (chains,) bool, the chain moved
    diverging: Tensor  # (chains,) bool, the proposal was divergent (see :func:`divergent`)
    log_accept_ratio: Tensor  # (chains,)
    jump_prob: Tensor | None = None  # (chains,) global kernels only
    aux: Any = None


GRADIENT_STEP = Evaluations(1, 1)


@runtime_checkable
class Kernel(Protocol):
    """A transition kernel: ``init_params``, ``init``, ``draw_noise`` and a pure ``step`` (see the module docstring).

    ``evaluations(noise)`` says how many forward and backward passes per chain the step with that
    noise costs (so budgets compare across kernels); kernels without it cost one of each.
    ``fusable`` (optional, default False) says that ``step`` is tensors in, tensors out, so that
    :mod:`.fused` may compile several steps as one graph.
    """

    calibrated: bool

    def init_params(self, eps: Tensor, z: Tensor) -> Any: ...

    def init(self, target: Any, z: Tensor, params: Any) -> SamplerState: ...

    def draw_noise(self, state: SamplerState, rng: torch.Generator, params: Any) -> Any: ...

    def step(self, target: Any, state: SamplerState, params: Any, noise: Any) -> tuple[SamplerState, StepInfo]: ...
