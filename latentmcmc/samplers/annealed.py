"""Annealed samplers: move from the N(0, I) prior to the target during warm-up, with AIS log-weights."""

from __future__ import annotations

import torch
from torch import Tensor

from ..energy import EnergyFn, Target
from .base import Sampler
from .langevin import Langevin, _sq_norm
from .mala import MALA
from .schedules import Schedule, make_schedule
from .state import SamplerState, StepInfo

__all__ = ["AnnealedLangevin", "AnnealedMALA"]


def _level_gap(level_prev: Tensor | None, level: Tensor | None) -> Tensor | None:
    """``l_prev - l`` (None stands for level 1), or None when both are 1."""
    if level_prev is None and level is None:
        return None
    one = (level if level is not None else level_prev).new_ones(())
    return (one if level_prev is None else level_prev) - (one if level is None else level)


class _Annealed(Sampler):
    r"""Anneal along ``E_l(z) = (1 - l) * 0.5|z|^2 + l * E(z)`` during warm-up, ``l`` from 0 to 1.

    The path is geometric between the prior ``N(0, I)`` (``l = 0``) and the target (``l = 1``): for a
    :class:`~latentmcmc.LatentEnergy` with the prior term, ``E_l = l * beta * U(G(z)) + 0.5|z|^2``, so the
    level is the inverse temperature of the critic term.  Warm-up step ``k`` runs the kernel at level
    ``l_k`` of the schedule; the recorded steps run at the target.  Importance log-weights accumulate
    so that ``chains.log_normalizer()`` estimates ``log Z`` relative to the prior; they are exact only
    when ``z0`` is a draw from N(0, I) (e.g. ``torch.randn``).
    """

    def __init__(self, energy: EnergyFn | Target, eps: float | Tensor = 0.01, schedule: Schedule = "linear",
                 compile: bool | str = False) -> None:
        super().__init__(energy, eps, compile)
        if isinstance(schedule, str):
            make_schedule(schedule, 1, torch.float64, torch.device("cpu"))  # fail early on an unknown name
        self.schedule = schedule

    def _levels(self, warmup: int, z: Tensor) -> Tensor:
        if warmup < 1:
            raise ValueError(
                f"{type(self).__name__} anneals from the prior to the target during warm-up: warmup must be >= 1"
            )
        return make_schedule(self.schedule, warmup, z.dtype, z.device)

    @staticmethod
    def _tempering_increment(before: SamplerState, level_prev: Tensor | None, level: Tensor | None) -> Tensor | None:
        """``E_{l_prev}(z) - E_l(z) = (l_prev - l) (E(z) - 0.5|z|^2)`` at the state before the step."""
        gap = _level_gap(level_prev, level)
        if gap is None:
            return None
        return gap * (before.energy - 0.5 * _sq_norm(before.z))


class AnnealedMALA(_Annealed, MALA):
    r"""MALA annealed from the prior to the target, with annealed importance sampling (Neal 2001).

    Warm-up step ``k`` applies a MALA kernel that leaves ``exp(-E_{l_k})`` invariant, where
    ``E_l(z) = (1 - l) 0.5|z|^2 + l E(z)`` and ``l_k`` follows ``schedule`` (``"linear"``,
    ``"geometric"``, ``"sigmoid"``, a function ``n -> levels`` or the levels themselves, ending at 1).
    The AIS log-weight of each chain is

    .. math::  \log w = \sum_k \bigl[E_{l_{k-1}}(z_{k-1}) - E_{l_k}(z_{k-1})\bigr],\qquad l_0 = 0,

    so ``mean(w)`` estimates ``Z = \int e^{-E} dz / (2\pi)^{d/2}`` when ``z0 ~ N(0, I)``.  Steps after
    warm-up are plain MALA at the target and leave the weights unchanged; the weighted draws
    (``chains.importance_weights()``) are properly weighted for the target even where the annealing was
    too fast for the chains' own proportions to be right.
    """

    def _log_weight_increment(self, before, info, level_prev, level):
        return self._tempering_increment(before, level_prev, level)


class AnnealedLangevin(_Annealed, Langevin):
    r"""Unadjusted Langevin annealed from the prior to the target, with exact importance weights.

    The same path and schedule as :class:`AnnealedMALA`.  Because ULA does not leave ``exp(-E_l)``
    invariant, plain AIS weights would be biased; instead each step is weighted with the Langevin
    proposal's own reverse kernel (the "uncorrected" AIS of Thin et al. 2021):

    .. math::  \log w \mathrel{+}= \log\alpha_k + E_{l_{k-1}}(z_{k-1}) - E_{l_k}(z_{k-1}),

    where ``log alpha_k`` is the MH log ratio of the step's proposal at level ``l_k`` (never applied).
    These weights stay exact for any eps, also through the steps after warm-up, so ``log_normalizer()``
    is unbiased in ``Z``; their variance grows with eps and with the number of steps.  Frozen chains
    get weight zero.
    """

    def _log_weight_increment(self, before, info, level_prev, level):
        inc = info.log_accept_ratio
        temper = self._tempering_increment(before, level_prev, level)
        if temper is not None:
            inc = inc + temper
        dead = before.frozen | info.diverging
        return torch.where(dead, torch.full_like(inc, float("-inf")), inc)
