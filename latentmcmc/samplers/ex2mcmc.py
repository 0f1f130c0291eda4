"""Ex2MCMC: a global i-SIR move followed by local MALA steps (Samsonov et al. 2022)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..evaluations import Evaluations
from ..priors import STANDARD_NORMAL, LatentPrior
from .base import Sampler
from .isir import CANDIDATES, PROPOSAL, ISIRKernel, ISIRNoise
from .kernel import SamplerState, StepInfo
from .langevin import LangevinProposer
from .metropolis import MetropolisHastings, MHNoise
from .options import COMPILE, EPS, Option, integer

__all__ = ["Ex2MCMC", "Ex2MCMCKernel", "LOCAL_STEPS"]

LOCAL_STEPS = Option("local_steps", 3, "MALA steps after each global move.", int, integer(0))


class Ex2MCMCNoise(NamedTuple):
    isir: ISIRNoise
    local: tuple[MHNoise, ...]


class Ex2MCMCKernel:
    r"""One Ex2MCMC step: an i-SIR move (:class:`~latentmcmc.samplers.isir.ISIRKernel`), then ``local_steps`` MALA steps.

    Both parts leave ``exp(-E)`` invariant, so their composition does.  The MALA steps need the
    gradient at the point i-SIR selected: it is evaluated there (one forward and one backward pass)
    before the first local step.  Reusing the gradient of the point before the jump (as PyPI
    ``ex2mcmc`` 0.0.4 does) makes the MALA proposal density wrong after every jump, and the chain no
    longer samples the target (tested).  ``accept_prob`` is the mean acceptance of the local steps (what
    eps adapts to), ``jump_prob`` i-SIR's probability of leaving the current point.
    """

    calibrated = True

    def __init__(self, candidates: int, local_steps: int, proposal: Any = None,
                 prior: LatentPrior = STANDARD_NORMAL) -> None:
        self.isir = ISIRKernel(candidates, proposal, prior)
        self.mala = MetropolisHastings(LangevinProposer())
        self.local_steps = local_steps

    @property
    def proposal(self):
        return self.isir.proposal

    def init_params(self, eps: Tensor, z: Tensor) -> Any:
        return self.isir.proposal.init_params(eps, z)

    def init(self, target, z: Tensor, params: Any) -> SamplerState:
        if not self.local_steps:
            return self.isir.init(target, z, params)  # plain i-SIR: no gradient needed
        self.isir.proposal.check(z, params)
        return self.mala.init(target, z, params)

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: Any) -> Ex2MCMCNoise:
        isir = self.isir.draw_noise(state, rng, params)
        return Ex2MCMCNoise(isir, tuple(self.mala.draw_noise(state, rng, params) for _ in range(self.local_steps)))

    def gradient_after_jump(self, target, jumped: SamplerState, before: SamplerState) -> SamplerState:
        """The state at i-SIR's selected points with their own energy and gradient."""
        energy, grad = target.value_and_grad(jumped.z)
        return SamplerState(jumped.z, energy, grad, before.frozen)

    def step(self, target, state: SamplerState, params: Any, noise: Ex2MCMCNoise) -> tuple[SamplerState, StepInfo]:
        jumped, jump_info = self.isir.step(target, state, params, noise.isir)
        if not self.local_steps:
            return jumped, jump_info
        current = self.gradient_after_jump(target, jumped, state)
        accept = torch.zeros_like(state.energy)
        moved, diverging = jump_info.accepted, jump_info.diverging
        for local in noise.local:
            current, info = self.mala.step(target, current, params, local)
            accept = accept + info.accept_prob
            moved, diverging = moved | info.accepted, diverging | info.diverging
        return current, StepInfo(accept / self.local_steps, moved, diverging, info.log_accept_ratio,
                                 jump_prob=jump_info.jump_prob, aux=jump_info.aux)

    def report(self, params: Any) -> dict:
        """What the run's final parameters say (a fitted flow proposal: the flow)."""
        report = getattr(self.isir.proposal, "report", None)
        return report(params) if report is not None else {}

    def evaluations(self, noise: Ex2MCMCNoise) -> Evaluations:
        local = (1 + self.local_steps) if self.local_steps else 0
        return Evaluations(self.isir.candidates - 1 + local, local)


class Ex2MCMC(Sampler):
    r"""Ex2MCMC (Samsonov, Lagutin, Gabrié, Durmus, Naumov, Moulines 2022): i-SIR jumps plus local MALA steps.

    One step is a global i-SIR move with ``candidates`` points (the current one and ``candidates - 1``
    draws of ``proposal``), then ``local_steps`` MALA steps with step size ``eps`` (adapted during
    warm-up on the local steps' acceptance, target 0.574).  The global move reaches other modes; the
    local steps refine within one.  Exact for any eps.  Cost per step and chain: ``candidates - 1 +
    local_steps + 1`` forward passes and ``local_steps + 1`` backward passes.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: step size of the MALA steps (noise variance; a scalar shared, or ``(chains,)``).
        candidates: ``K >= 2`` i-SIR points per step, the current one included.
        local_steps: MALA steps after each global move (>= 0).
        proposal: None for the target's prior (``N(0, I)`` by default), or any object with ``.sample(shape)`` and ``.log_prob(z) -> (n,)``.
        compile: compile the energy with ``torch.compile``.
    """

    options = (EPS, CANDIDATES, LOCAL_STEPS, PROPOSAL, COMPILE)
    global_moves = True

    def make_kernel(self) -> Ex2MCMCKernel:
        return Ex2MCMCKernel(self.candidates, self.local_steps, self.proposal, self.raw_target.prior)
