"""Annealing as a change of target: the tempered path from the prior to ``E``, and its importance weights.

The driver anneals by handing an unchanged kernel a different target at each warm-up step (as
BlackJAX's tempered SMC builds a log density per temperature): :class:`TemperedTarget` at level ``l``
is ``E_l(z) = (1 - l) E_0(z) + l E(z)``, ``E_0`` the energy of the target's prior (``0.5|z|^2`` for ``N(0, I)``).  States keep ``E``'s own energy and gradient, from which the
tempered values follow without another model call (:meth:`TemperedTarget.potential`).
:func:`ais_log_weight_increment` is the annealed-importance-sampling weight of one step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kernel import SamplerState, StepInfo

__all__ = ["TemperedTarget", "ais_log_weight_increment"]


class TemperedTarget:
    r"""``E_l(z) = (1 - l) E_0(z) + l E(z)``: geometric path from the prior (``l = 0``) to ``E`` (``l = 1``).

    ``E_0`` is the energy of ``target.prior`` (:class:`~latentmcmc.priors.LatentPrior`; ``0.5|z|^2`` for
    ``N(0, I)``).  For a :class:`~latentmcmc.LatentEnergy` with the prior term, ``E_l = l beta U(G(z)) + E_0(z)``:
    the level is an inverse temperature on the critic term.  ``value_and_grad`` returns ``E``'s own
    values (what states cache); ``potential`` maps them to ``E_l``'s.
    """

    def __init__(self, target, level: Tensor) -> None:
        self.target = target
        self.level = level

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.target.value_and_grad(z)

    def potential(self, z: Tensor, energy: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        prior, prior_grad = self.target.prior.value_and_grad(z)
        return prior + self.level * (energy - prior), prior_grad + self.level * (grad - prior_grad)

    def __call__(self, z: Tensor) -> Tensor:
        energy = self.target(z)
        prior = self.target.prior.energy(z)
        return prior + self.level * (energy - prior)


def _level_gap(level_prev: Tensor | None, level: Tensor | None) -> Tensor | None:
    """``l_prev - l`` (None stands for level 1), or None when both are 1."""
    if level_prev is None and level is None:
        return None
    one = (level if level is not None else level_prev).new_ones(())
    return (one if level_prev is None else level_prev) - (one if level is None else level)


def ais_log_weight_increment(calibrated: bool, before: SamplerState, info: StepInfo, level_prev: Tensor | None,
                             level: Tensor | None, prior) -> Tensor | None:
    r"""Log importance weight gained by one step at ``level`` (None: the target, ``l = 1``) after ``level_prev``.

    For a kernel that leaves ``exp(-E_l)`` invariant (annealed importance sampling, Neal 2001):

    .. math::  \Delta\log w = E_{l_{prev}}(z) - E_l(z) = (l_{prev} - l)\,(E(z) - E_0(z))

    at the state ``z`` before the step (None when both levels are 1), ``E_0`` the energy of ``prior``.  For an uncalibrated kernel
    (unadjusted Langevin) the step's own MH log ratio is added, which keeps the weights exact for
    any step size (the "uncorrected" AIS of Thin et al. 2021); chains that were frozen or diverged
    get weight zero (``-inf``).
    """
    gap = _level_gap(level_prev, level)
    temper = None if gap is None else gap * (before.energy - prior.energy(before.z))
    if calibrated:
        return temper
    inc = info.log_accept_ratio if temper is None else info.log_accept_ratio + temper
    dead = before.frozen | info.diverging
    return torch.where(dead, torch.full_like(inc, float("-inf")), inc)
