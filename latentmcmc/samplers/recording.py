"""Storage of a run's draws: full, thinned, or the last state only, preallocated on the chains' device."""

from __future__ import annotations

import torch
from torch import Tensor

from .state import SamplerState, StepInfo, acceptance_probability


class PhaseRecorder:
    """Records one phase (warm-up or sampling) of a run.

    Every ``thin``-th state is written into preallocated tensors (``store=True``); running sums of
    the acceptance probability, the would-be MH acceptance and divergences cover every step, so
    rates stay exact under thinning or with nothing stored.  Nothing here reads values back to the
    host.
    """

    def __init__(self, state: SamplerState, steps: int, thin: int, store: bool, store_eps: bool,
                 track_mh: bool = False) -> None:
        z = state.z
        chains = z.shape[0]
        self.thin = thin
        n = steps // thin if store else 0
        self.draws = z.new_empty((chains, n) + tuple(z.shape[1:]))
        self.energy = state.energy.new_empty((chains, n))
        self.accept_prob = state.energy.new_empty((chains, n))
        self.diverging = torch.zeros((chains, n), dtype=torch.bool, device=z.device)
        self.eps = state.energy.new_empty((chains, n)) if store_eps else None
        self.accept_sum = torch.zeros_like(state.energy)
        self.mh_accept_sum = torch.zeros_like(state.energy) if track_mh else None
        self.divergences = torch.zeros(chains, dtype=torch.int64, device=z.device)
        self.last_accept_prob = torch.ones_like(state.energy)
        self.count = 0  # steps recorded so far (fewer than ``steps`` after an interruption)

    def record(self, i: int, state: SamplerState, info: StepInfo, eps: Tensor) -> None:
        self.count += 1
        self.accept_sum += info.accept_prob
        if self.mh_accept_sum is not None:  # unadjusted Langevin: the acceptance MALA would have had
            self.mh_accept_sum += acceptance_probability(info.log_accept_ratio)
        self.divergences += info.diverging
        self.last_accept_prob = info.accept_prob
        if (i + 1) % self.thin == 0 and self.draws.shape[1] > 0:
            j = (i + 1) // self.thin - 1
            self.draws[:, j] = state.z
            self.energy[:, j] = state.energy
            self.accept_prob[:, j] = info.accept_prob
            self.diverging[:, j] = info.diverging
            if self.eps is not None:
                self.eps[:, j] = eps

    def rate(self, total: Tensor) -> Tensor:
        """Per-step mean of a running sum over the steps recorded so far."""
        return total / max(self.count, 1)
