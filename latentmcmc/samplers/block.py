"""The one step path: ``K`` steps of a kernel with the driver's per-step policies, run eagerly or compiled.

Every step of every run goes through :func:`run_steps`: the kernel's step on the (possibly tempered)
target, freezing a diverged chain of an uncalibrated kernel after warm-up, the step's annealed
importance weight, and during warm-up the dual-averaging update of eps.  The driver calls it with one
step at a time (eager), or :class:`~latentmcmc.samplers.fused.FusedBlock` compiles it for ``K`` steps
as one graph; both return the same :class:`BlockOutput`, which the driver's bookkeeping (recording,
``warmup="auto"``, the monitor, costs, observers) reads the same way.  So an eager run and a fused run
differ only in floating-point rounding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .adaptation import (
    DualAveragingState,
    StepSizeAdapter,
    acceptance_statistic,
    adaptation_signal,
    dual_averaging_step,
)
from .kernel import SamplerState, StepInfo
from .tempering import TemperedTarget, ais_log_weight_increment

__all__ = ["BlockOutput", "Adaptation", "run_steps"]


class Adaptation(NamedTuple):
    """The step-size update inside a block: dual averaging's constants, its centre and its state."""

    target_accept: float
    shared: bool
    t0: float
    kappa: float
    gamma: float
    prox_center: Tensor
    state: DualAveragingState

    @classmethod
    def of(cls, adapter: StepSizeAdapter) -> "Adaptation":
        return cls(adapter.target_accept, adapter.shared, adapter.t0, adapter.kappa, adapter.gamma,
                   adapter.prox_center, adapter.state)


class BlockOutput(NamedTuple):
    """What ``K`` steps produced: the final state and parameters, and each step's values stacked on a leading ``K`` axis."""

    state: SamplerState
    params: Any  # the kernel's parameters after the block (eps adapted inside a warm-up block)
    z: Tensor | None  # (K, chains, *latent_shape), None when the states are not needed
    energy: Tensor  # (K, chains)
    accept_prob: Tensor  # (K, chains)
    accepted: Tensor  # (K, chains)
    diverging: Tensor  # (K, chains)
    log_accept_ratio: Tensor  # (K, chains)
    jump_prob: Tensor | None  # (K, chains), global kernels only
    eps: Tensor  # (K, chains) the eps each step ran with
    adaptation: DualAveragingState | None = None  # dual averaging's state after the block (adapting blocks)
    log_weights: Tensor | None = None  # (chains,) AIS log-weights after the block (annealed runs)
    level_prev: Tensor | None = None  # annealed runs: the level of the block's last step (None: the target)
    aux: Any = None  # a one-step block's ``StepInfo.aux`` (what warm-up adapters read)

    @property
    def steps(self) -> int:
        return self.energy.shape[0]

    def info(self, k: int) -> StepInfo:
        """Step ``k``'s info as the kernel returned it (``aux`` only for the block's last step)."""
        return StepInfo(self.accept_prob[k], self.accepted[k], self.diverging[k], self.log_accept_ratio[k],
                        None if self.jump_prob is None else self.jump_prob[k], self.aux if k == self.steps - 1 else None)


def _stacked(values: list[Tensor]) -> Tensor:
    """``(K, ...)``: one step's value as a view, several stacked."""
    return values[0].unsqueeze(0) if len(values) == 1 else torch.stack(values)


def replaced(record: Any, **changes: Any) -> Any:
    """``record._replace(**changes)`` for a NamedTuple, written as a call of its constructor.

    :func:`run_steps` is traced by ``torch.compile``; torch 2.11's Dynamo traced ``_replace`` into an empty
    tuple (a fused block's parameters lost their step size on a GPU), while a constructor call traces
    the same in every version.
    """
    cls = type(record)
    return cls(*[changes[name] if name in changes else getattr(record, name) for name in cls._fields])


def run_steps(kernel, target, state: SamplerState, params: Any, noises: list, *, freeze: bool, keep_states: bool,
              adaptation: Adaptation | None = None, levels: list[Tensor | None] | None = None,
              level_prev: Tensor | None = None, log_weights: Tensor | None = None) -> BlockOutput:
    """``len(noises)`` steps of ``kernel`` from ``state`` with ``params``; a pure function of its arguments.

    ``freeze``: an uncalibrated kernel's diverged chains stop (after warm-up).  ``adaptation``: update
    eps by dual averaging after every step (warm-up).  ``levels``: each step's annealing level (None:
    the target), with the AIS log-weights ``log_weights`` accumulated from ``level_prev`` on.
    """
    chains = state.z.shape[0]
    zs, energies, accept, accepted, diverging, ratios, jumps, eps_used = [], [], [], [], [], [], [], []
    dual = None if adaptation is None else adaptation.state
    info = None
    for j, noise in enumerate(noises):
        before = state
        level = None if levels is None else levels[j]
        state, info = kernel.step(target if level is None else TemperedTarget(target, level), before, params, noise)
        if freeze:  # uncalibrated kernels after warm-up: a divergent chain stops
            state = replaced(state, frozen=state.frozen | info.diverging)
        if log_weights is not None:
            inc = ais_log_weight_increment(kernel.calibrated, before, info, level_prev, level, target.prior)
            if inc is not None:
                log_weights = log_weights + inc
            level_prev = level
        eps_used.append(params.eps)
        if adaptation is not None:  # StepSizeAdapter.update, as a function of tensors
            a = adaptation
            g = a.target_accept - acceptance_statistic(adaptation_signal(kernel, info), ~state.frozen, a.shared)
            dual = dual_averaging_step(dual, g, a.prox_center, a.t0, a.kappa, a.gamma)
            params = replaced(params, eps=dual.x_t.exp().expand(chains) if a.shared else dual.x_t.exp())
        if keep_states:
            zs.append(state.z)
        energies.append(state.energy)
        accept.append(info.accept_prob)
        accepted.append(info.accepted)
        diverging.append(info.diverging)
        ratios.append(info.log_accept_ratio)
        if info.jump_prob is not None:
            jumps.append(info.jump_prob)
    return BlockOutput(state, params, _stacked(zs) if keep_states else None, _stacked(energies), _stacked(accept),
                       _stacked(accepted), _stacked(diverging), _stacked(ratios), _stacked(jumps) if jumps else None,
                       _stacked(eps_used), dual, log_weights, level_prev, info.aux if len(noises) == 1 else None)
