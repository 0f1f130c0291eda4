"""The Langevin proposal, and unadjusted Langevin: the sampler that takes every proposal."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Sampler
from .kernel import KernelParams, SamplerState, broadcast_chains, gradient_state
from .metropolis import Proposal, Uncalibrated

__all__ = ["LangevinProposer", "Langevin"]


class LangevinProposer:
    r"""The Langevin proposal ``z' = z - (eps/2) grad E(z) + sqrt(eps) xi``, ``xi ~ N(0, I)``.

    Its Metropolis-Hastings log ratio, with ``q(z'|z) = N(z'; z - (eps/2) g(z), eps I)``, is

    .. math::
        \log\alpha = E(z) - E(z') + \log q(z|z') - \log q(z'|z)
                   = E(z) - E(z') + s\cdot(\xi - s/2),\quad s = \tfrac{\sqrt{\epsilon}}{2}(g(z) + g(z'))

    (the Gaussian log densities written in terms of ``xi`` so that nothing cancels when eps is
    small).  ``eps`` (``params.eps``) has shape ``(chains,)``.  The energies in the ratio are the target's
    :meth:`~latentmcmc.energy.Target.potential` (a tempered target during annealing).
    """

    fusable = True  # tensors in, tensors out: K steps compile as one graph (.fused)

    def init(self, target, z: Tensor, params: KernelParams) -> SamplerState:
        return gradient_state(target, z)

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: KernelParams) -> Tensor:
        z = state.z
        return torch.randn(z.shape, generator=rng, device=z.device, dtype=z.dtype)

    def propose(self, target, state: SamplerState, params: KernelParams, xi: Tensor) -> Proposal:
        z, eps = state.z, params.eps
        half_eps = broadcast_chains(0.5 * eps, z)
        sqrt_eps = broadcast_chains(eps.sqrt(), z)
        energy_l, grad_l = target.potential(z, state.energy, state.grad)
        z_new = torch.addcmul(torch.addcmul(z, half_eps, grad_l, value=-1.0), sqrt_eps, xi)
        energy_new, grad_new = target.value_and_grad(z_new)
        energy_new_l, grad_new_l = target.potential(z_new, energy_new, grad_new)
        s = (0.5 * sqrt_eps) * (grad_l + grad_new_l)
        log_q_ratio = torch.linalg.vecdot(s.reshape(z.shape[0], -1), torch.add(xi, s, alpha=-0.5).reshape(z.shape[0], -1))
        return Proposal(z_new, energy_new, grad_new, energy_l - energy_new_l + log_q_ratio)


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
        eps, compile: the options :data:`~.options.EPS` and :data:`~.options.COMPILE`.
    """

    default_target_accept = 0.9

    def make_kernel(self) -> Uncalibrated:
        return Uncalibrated(LangevinProposer())
