"""Metropolis-adjusted Langevin algorithm."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Sampler
from .langevin import move, propose
from .state import SamplerState, StepInfo, acceptance_probability, divergent

__all__ = ["MALA"]


class MALA(Sampler):
    r"""Metropolis-adjusted Langevin algorithm, batched over chains.

    Proposal ``z' = z - (eps/2) grad E(z) + sqrt(eps) xi`` with density
    ``q(z'|z) = N(z'; z - (eps/2) grad E(z), eps I)``, accepted with probability

    .. math::  \alpha = \min\Bigl(1, \frac{e^{-E(z')}\, q(z\mid z')}{e^{-E(z)}\, q(z'\mid z)}\Bigr)

    computed in log space.  The chain leaves ``exp(-E)`` exactly invariant for any eps.  A proposal
    with a non-finite energy or gradient is rejected and counted as a divergence, as is (rejected by
    the test itself) one whose log ratio is below -1000, Stan's energy-error threshold.  Energy and
    gradient of the current state are cached: one step costs one forward and one backward pass.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: step size (noise variance; ``eps = 2 * step_size`` of BlackJAX, ``= h`` of TFP); a
            scalar is shared by all chains, a ``(chains,)`` tensor is per chain.
        compile: compile the energy's forward and backward with ``torch.compile`` (True or a mode;
            ``"reduce-overhead"`` uses CUDA graphs); same noise and accept decisions as eager.
    """

    metropolis = True

    def step(
        self, state: SamplerState, generator: torch.Generator | None = None, eps: Tensor | float | None = None,
        level: Tensor | None = None, in_warmup: bool = False,
    ) -> tuple[SamplerState, StepInfo]:
        eps_t = self._eps_for(state, eps)
        proposal = propose(self.target, state, eps_t, generator, level)
        log_ratio = proposal.log_accept_ratio
        finite = torch.isfinite(log_ratio)
        exp_draw = torch.empty_like(log_ratio).exponential_(generator=generator)  # -log U
        accepted = finite & (log_ratio > -exp_draw)
        accept_prob = acceptance_probability(log_ratio)
        new_state = move(state, proposal, accepted, state.frozen)
        return new_state, StepInfo(accept_prob, accepted, divergent(log_ratio, finite), log_ratio)
