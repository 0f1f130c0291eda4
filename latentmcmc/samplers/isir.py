"""Iterated sampling-importance resampling (i-SIR): a global move with independent proposals."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..evaluations import Evaluations
from ..priors import STANDARD_NORMAL, LatentPrior
from .base import Sampler
from .kernel import SamplerState, StepInfo
from .options import COMPILE, Option, integer
from .proposals import as_proposal

__all__ = ["ISIR", "ISIRKernel", "ISIRNoise", "CANDIDATES", "PROPOSAL"]

CANDIDATES = Option("candidates", 10, "Points per global (i-SIR) move, the current one included (candidates - 1 forward "
                    "passes).", int, integer(2, " (the current point and at least one draw)"))
PROPOSAL = Option("proposal", None, "i-SIR's proposal: None for the latent prior (N(0, I) unless prior= says), or any object with .sample(shape) and "
                  ".log_prob(z) -> (n,) (torch.distributions, a flow).")

_ROWS_PER_CALL = 65536  # candidates evaluated per call of the energy (bounded memory)


class ISIRNoise(NamedTuple):
    candidates: Tensor  # (chains, candidates - 1, *latent_shape) draws of the proposal
    gumbel: Tensor  # (chains, candidates) Gumbel(0, 1) draws for the selection


def energies_of(target, y: Tensor) -> Tensor:
    """``E`` of ``(chains, k, *latent_shape)`` points as ``(chains, k)``, forward passes only, in bounded calls."""
    chains, k = y.shape[:2]
    per_call = max(1, _ROWS_PER_CALL // chains)
    out = []
    with torch.no_grad():
        for j in range(0, k, per_call):
            block = y[:, j:j + per_call]
            e = target(block.reshape((-1,) + tuple(y.shape[2:])))
            out.append(e.reshape(chains, block.shape[1]))
    return torch.cat(out, 1)


class ISIRKernel:
    r"""One i-SIR step (Andrieu, Lee & Vihola 2018): keep the current point, draw ``K - 1`` candidates.

    With ``y_0 = z`` and ``y_1..y_{K-1} ~ q`` independently, select ``J`` with probability
    ``w_J / sum_j w_j``, ``log w_j = -E(y_j) - log q(y_j)``, and move to ``y_J``.  The chain leaves
    ``exp(-E)`` invariant for any proposal ``q`` whose support covers it; the selection is a Gumbel-max
    draw.  ``jump_prob = 1 - w_0 / sum_j w_j`` is the probability of leaving the current point.  A
    candidate with a non-finite energy gets weight zero and marks the step divergent.  Costs ``K - 1``
    forward passes per chain and no gradient.
    """

    calibrated = True

    def __init__(self, candidates: int, proposal: Any = None, prior: LatentPrior = STANDARD_NORMAL) -> None:
        self.candidates = candidates
        self.proposal = as_proposal(proposal, prior=prior)

    def init_params(self, eps: Tensor, z: Tensor) -> Any:
        return self.proposal.init_params(eps, z)

    def init(self, target, z: Tensor, params: Any) -> SamplerState:
        self.proposal.check(z, params)
        with torch.no_grad():
            energy = target(z)
        if not isinstance(energy, Tensor) or energy.shape != z.shape[:1]:
            shape = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
            raise ValueError(f"energy returned shape {shape}; expected ({z.shape[0]},), one energy per chain")
        return SamplerState(z.clone(), energy, None, torch.zeros(z.shape[0], dtype=torch.bool, device=z.device))

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: Any) -> ISIRNoise:
        chains, k = state.z.shape[0], self.candidates
        y = self.proposal.sample(chains * (k - 1), rng, state.z, params)
        y = y.reshape((chains, k - 1) + tuple(state.z.shape[1:]))
        e = torch.empty((chains, k), dtype=state.energy.dtype, device=state.z.device).exponential_(generator=rng)
        return ISIRNoise(y, -e.log())

    def step(self, target, state: SamplerState, params: Any, noise: ISIRNoise) -> tuple[SamplerState, StepInfo]:
        z, chains = state.z, state.z.shape[0]
        y = torch.cat([z.unsqueeze(1), noise.candidates], 1)  # (chains, K, ...)
        energy = torch.cat([state.energy.unsqueeze(1), energies_of(target, noise.candidates)], 1)
        with torch.no_grad():
            log_q = self.proposal.log_prob(y.reshape((-1,) + tuple(z.shape[1:])), params)
            log_q = log_q.reshape(chains, -1).to(energy.dtype)
        log_w = -energy - log_q
        finite = torch.isfinite(log_w)
        log_w = torch.where(finite, log_w, torch.full_like(log_w, float("-inf")))
        pick = (log_w + noise.gumbel).argmax(1)
        rows = torch.arange(chains, device=z.device)
        jump = 1.0 - torch.softmax(log_w, 1)[:, 0]
        moved = pick != 0
        new = SamplerState(y[rows, pick], energy[rows, pick], None, state.frozen)
        info = StepInfo(jump, moved, ~finite[:, 1:].all(1), torch.log(jump), jump_prob=jump, aux=(y, log_w))
        return new, info

    def evaluations(self, noise: ISIRNoise) -> Evaluations:
        return Evaluations(self.candidates - 1, 0)


class ISIR(Sampler):
    r"""Iterated sampling-importance resampling, batched over chains (Andrieu, Lee & Vihola 2018).

    Each step draws ``candidates - 1`` points from ``proposal``, keeps the current point as the
    ``candidates``-th, and moves to one of them with probability proportional to its importance
    weight ``exp(-E(y)) / q(y)``: an exact MCMC kernel that can jump between modes in one step, which
    local moves cannot.  ``accept_prob`` (and ``chains.jump_rate``) is the probability of leaving the
    current point.  No gradient, no step size.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        candidates: ``K >= 2`` points per step, the current one included (``K - 1`` forward passes).
        proposal: None for the target's prior (``N(0, I)`` by default; the weights are then ``exp(-beta U(G(y)))``
            for a LatentEnergy), or any object with ``.sample(shape)`` and ``.log_prob(z) -> (n,)``.
        compile: compile the energy with ``torch.compile`` (see :func:`~latentmcmc.energy.compile_target`).
    """

    options = (CANDIDATES, PROPOSAL, COMPILE)
    global_moves = True

    def make_kernel(self) -> ISIRKernel:
        return ISIRKernel(self.candidates, self.proposal, self.raw_target.prior)
