"""Unadjusted Langevin: the proposal every sampler here shares, and the sampler that accepts it always."""

from __future__ import annotations

import torch
from torch import Tensor

from ..energy import Target
from .base import Sampler
from .state import SamplerState, StepInfo, divergent

__all__ = ["Langevin", "LangevinProposal", "propose", "bridge"]


def _sq_norm(x: Tensor) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    return torch.linalg.vecdot(flat, flat)


def bridge(z: Tensor, energy: Tensor, grad: Tensor, level: Tensor | None) -> tuple[Tensor, Tensor]:
    r"""Energy and gradient on the path from the prior to the target.

    ``E_l(z) = (1 - l) * 0.5|z|^2 + l * E(z)``; ``level=None`` means ``l = 1`` (the target itself).
    """
    if level is None:
        return energy, grad
    prior = 0.5 * _sq_norm(z)
    return prior + level * (energy - prior), z + level * (grad - z)


class LangevinProposal:
    """A proposed move ``z' = z - (eps/2) grad E(z) + sqrt(eps) xi`` and its MH log ratio."""

    __slots__ = ("z", "energy", "grad", "log_accept_ratio")

    def __init__(self, z: Tensor, energy: Tensor, grad: Tensor, log_accept_ratio: Tensor):
        self.z, self.energy, self.grad, self.log_accept_ratio = z, energy, grad, log_accept_ratio


def propose(
    target: Target, state: SamplerState, eps: Tensor, generator: torch.Generator | None, level: Tensor | None = None
) -> LangevinProposal:
    r"""Draw the Langevin proposal for every chain and its Metropolis-Hastings log ratio.

    With ``xi ~ N(0, I)`` and the proposal density ``q(z'|z) = N(z'; z - (eps/2) g(z), eps I)``:

    .. math::
        \log\alpha = E(z) - E(z') + \log q(z|z') - \log q(z'|z)
                   = E(z) - E(z') + s\cdot(\xi - s/2),\quad s = \tfrac{\sqrt{\epsilon}}{2}(g(z) + g(z'))

    (the Gaussian log densities written in terms of ``xi`` so that nothing cancels when eps is
    small).  ``eps`` has shape ``(chains,)``.  Energies at ``level`` follow :func:`bridge`.
    """
    z = state.z
    b_shape = (-1,) + (1,) * (z.dim() - 1)
    half_eps = (0.5 * eps).reshape(b_shape)
    sqrt_eps = eps.sqrt().reshape(b_shape)
    energy_l, grad_l = bridge(z, state.energy, state.grad, level)
    xi = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    z_new = torch.addcmul(torch.addcmul(z, half_eps, grad_l, value=-1.0), sqrt_eps, xi)
    energy_new, grad_new = target.value_and_grad(z_new)
    energy_new_l, grad_new_l = bridge(z_new, energy_new, grad_new, level)
    s = (0.5 * sqrt_eps) * (grad_l + grad_new_l)
    log_q_ratio = torch.linalg.vecdot(s.reshape(z.shape[0], -1), torch.add(xi, s, alpha=-0.5).reshape(z.shape[0], -1))
    log_ratio = energy_l - energy_new_l + log_q_ratio
    return LangevinProposal(z_new, energy_new, grad_new, log_ratio)


def move(state: SamplerState, proposal: LangevinProposal, take: Tensor, frozen: Tensor) -> SamplerState:
    """Move the chains where ``take`` is true to the proposal; keep the others."""
    take_b = take.reshape((-1,) + (1,) * (state.z.dim() - 1))
    return SamplerState(
        torch.where(take_b, proposal.z, state.z),
        torch.where(take, proposal.energy, state.energy),
        torch.where(take_b, proposal.grad, state.grad),
        frozen,
    )


class Langevin(Sampler):
    r"""Unadjusted Langevin algorithm (ULA), batched over chains.

    .. math::  z' = z - \tfrac{\epsilon}{2}\nabla E(z) + \sqrt{\epsilon}\,\xi,\qquad \xi\sim N(0, I)

    Every proposal is taken, so the chain samples ``exp(-E)`` only up to an O(eps) bias (for
    ``N(0, s^2)`` the stationary variance is ``s^2 / (1 - eps / (4 s^2))``); use :class:`MALA` for an
    exact target.  A chain whose proposal is divergent (non-finite energy or gradient, or a
    Metropolis-Hastings log ratio below -1000, Stan's energy-error threshold) is frozen at its last
    state and counted; during warm-up such a proposal is only rejected.  Step-size adaptation
    targets the acceptance MALA would have with the same eps (a measure of the discretisation
    error; default 0.9), reported as ``chains.mh_accept_rate`` apart from ``accept_prob``, which is 1.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: step size (noise variance); a scalar is shared by all chains, a ``(chains,)`` tensor is
            per chain.
        compile: compile the energy's forward and backward with ``torch.compile`` (True or a mode;
            ``"reduce-overhead"`` uses CUDA graphs); same noise and accept decisions as eager.
    """

    metropolis = False
    default_target_accept = 0.9

    def step(
        self, state: SamplerState, generator: torch.Generator | None = None, eps: Tensor | float | None = None,
        level: Tensor | None = None, in_warmup: bool = False,
    ) -> tuple[SamplerState, StepInfo]:
        """One ULA step.  A divergent proposal (non-finite, or an energy error above 1000) freezes its
        chain; during warm-up (``in_warmup``) it is only rejected, so that a trial step size that is too
        large cannot throw a chain where the unadjusted dynamics never return."""
        eps_t = self._eps_for(state, eps)
        proposal = propose(self.target, state, eps_t, generator, level)
        bad = divergent(proposal.log_accept_ratio)
        frozen = state.frozen if in_warmup else state.frozen | bad
        take = ~bad & ~frozen
        new_state = move(state, proposal, take, frozen)
        ones = torch.ones_like(state.energy)
        return new_state, StepInfo(ones, take, bad & ~state.frozen, proposal.log_accept_ratio)
