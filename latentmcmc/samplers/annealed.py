"""Annealed samplers: the MALA and Langevin kernels on a target tempered from the prior during warm-up."""

from __future__ import annotations

import torch
from torch import Tensor

from .langevin import Langevin
from .mala import MALA
from .options import COMPILE, EPS, Option
from .schedules import SCHEDULES, Schedule, make_schedule

__all__ = ["AnnealedLangevin", "AnnealedMALA", "SCHEDULE"]


def _check_schedule(schedule: Schedule) -> Schedule:
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"must be one of {', '.join(SCHEDULES)} (in Python also a function n -> levels, or the "
                             f"levels), got {schedule!r}")
    elif not (callable(schedule) or isinstance(schedule, (list, tuple, Tensor))):
        raise ValueError(f"must be a schedule's name ({', '.join(SCHEDULES)}), a function n -> levels or the levels, "
                         f"got {type(schedule).__name__}")
    return schedule


SCHEDULE = Option("schedule", "linear", "Annealing schedule (a name; in Python also a function n -> levels, or the "
                  "levels).", str, _check_schedule, choices=lambda: SCHEDULES)


class _Annealed:
    r"""Anneal along ``E_l(z) = (1 - l) * 0.5|z|^2 + l * E(z)`` during warm-up, ``l`` from 0 to 1.

    The path is geometric between the prior ``N(0, I)`` (``l = 0``) and the target (``l = 1``): for a
    :class:`~latentmcmc.LatentEnergy` with the prior term, ``E_l = l * beta * U(G(z)) + 0.5|z|^2``, so the
    level is the inverse temperature of the critic term.  Warm-up step ``k`` runs the kernel on the
    tempered target at level ``l_k`` of the schedule (:class:`~latentmcmc.samplers.tempering.TemperedTarget`);
    the recorded steps run at the target.  Importance log-weights accumulate so that
    ``chains.log_normalizer()`` estimates ``log Z`` relative to the prior; they are exact only when
    ``z0`` is a draw from N(0, I) (e.g. ``torch.randn``).

    For a Metropolis-Hastings kernel (AnnealedMALA) with eps adapted and a schedule given by name or
    function, the annealing takes the first three quarters of the warm-up and the last quarter runs
    at the target with dual averaging started afresh there: eps adapted while the target still moves
    does not suit the target, and the recorded steps would run below the target acceptance (0.47
    instead of 0.574 on a test mixture).  Those steps leave the AIS weights unchanged.  The restart
    needs :attr:`MIN_TARGET_STEPS` steps (a warm-up of 40 or more); shorter warm-ups anneal throughout
    and keep adapting, since dual averaging restarted for two or three steps ends near its exploratory
    start at ten times eps (warm-up 8: recorded acceptance 0.000 on a small DCGAN, 0.019 on the test
    mixture, 0.057 on the demo model; annealing throughout, 0.61 / 0.34 / 0.52).  AnnealedLangevin
    anneals over the whole warm-up: each of its steps at the target would add variance to its
    uncorrected-AIS weights.  Levels given explicitly are used as they are, for the whole warm-up.
    """

    TARGET_SHARE = 4  # with adaptation, the last warmup // 4 steps run at the target
    MIN_TARGET_STEPS = 10  # ... when that is at least this many steps, else none

    options = (EPS, SCHEDULE, COMPILE)
    anneals = True
    needs_warmup = "anneals from the prior to the target during warm-up"

    def _target_steps(self, warmup: int, adapt: bool) -> int:
        """Warm-up steps at the target after the annealing (where eps is adapted afresh)."""
        explicit = not (isinstance(self.schedule, str) or callable(self.schedule))
        if not adapt or explicit or not self.kernel.calibrated or warmup // self.TARGET_SHARE < self.MIN_TARGET_STEPS:
            return 0
        return warmup // self.TARGET_SHARE

    def annealing_levels(self, warmup: int, z: Tensor, adapt: bool = False) -> Tensor:
        self.check_warmup(warmup)
        at_target = self._target_steps(warmup, adapt)
        levels = make_schedule(self.schedule, warmup - at_target, z.dtype, z.device)
        return torch.cat([levels, torch.ones(at_target, dtype=z.dtype, device=z.device)])

    def adaptation_restart(self, warmup: int, adapt: bool) -> int | None:
        at_target = self._target_steps(warmup, adapt)
        return warmup - at_target if at_target else None


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
