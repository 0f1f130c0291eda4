"""Step-size adaptation by dual averaging, for one shared step size or one per chain."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .kernel import acceptance_probability

__all__ = ["StepSizeAdapter", "DualAveragingState", "dual_averaging_step", "acceptance_statistic", "adaptation_signal"]


class DualAveragingState(NamedTuple):
    """Dual averaging of ``log eps``: the running mean of ``H``, the iterate, its weighted average, the step count."""

    g_avg: Tensor  # (1,) shared or (chains,)
    x_t: Tensor
    x_avg: Tensor
    t: int | Tensor  # steps taken (a Python int in eager runs, a 0-d float64 tensor inside a fused block)


def dual_averaging_step(state: DualAveragingState, g: Tensor, prox_center: Tensor, t0: float, kappa: float,
                        gamma: float) -> DualAveragingState:
    r"""One step of Nesterov's dual averaging as Hoffman & Gelman (2014) use it, a pure function.

    .. math::
        \bar g_t = (1 - \tfrac{1}{t + t_0})\,\bar g_{t-1} + \tfrac{g_t}{t + t_0},\qquad
        x_t = \mu - \tfrac{\sqrt t}{\gamma}\,\bar g_t,\qquad
        \bar x_t = t^{-\kappa} x_t + (1 - t^{-\kappa})\,\bar x_{t-1}

    The arithmetic and its order are those of Pyro's ``DualAveraging.step`` (the same bits in eager
    runs; tested), written as a function of tensors so that a fused block can run it in its graph.
    """
    t = state.t + 1
    g_avg = (1 - 1 / (t + t0)) * state.g_avg + g / (t + t0)
    x_t = prox_center - (t ** 0.5) / gamma * g_avg
    weight = t ** (-kappa)
    x_avg = (1 - weight) * state.x_avg + weight * x_t
    return DualAveragingState(g_avg, x_t, x_avg, t)


def acceptance_statistic(accept_prob: Tensor, live: Tensor, shared: bool) -> Tensor:
    """The acceptance dual averaging sees: per chain, or (shared) the mean over live chains as a ``(1,)`` tensor."""
    if not shared:
        return accept_prob
    weight = live.to(accept_prob.dtype)
    return (accept_prob * weight).sum().div(weight.sum().clamp(min=1.0)).reshape(1)


def adaptation_signal(kernel, info) -> Tensor:
    """The acceptance dual averaging steers: MH's, or for an uncalibrated kernel the one MH would have had."""
    return info.accept_prob if kernel.calibrated else acceptance_probability(info.log_accept_ratio)


class StepSizeAdapter:
    r"""Dual averaging of ``log eps`` towards a target acceptance (Hoffman & Gelman 2014, sec. 3.2).

    With ``H_t = target_accept - a_t`` (``a_t`` the acceptance probability of step ``t``):

    .. math::
        x_t = \mu - \frac{\sqrt t}{\gamma}\,\frac{1}{t + t_0}\sum_{i\le t} H_i,\qquad
        \bar x_t = t^{-\kappa} x_t + (1 - t^{-\kappa})\,\bar x_{t-1},\qquad \mu = \log(10\,\epsilon_0)

    ``eps = exp(x_t)`` during warm-up and ``exp(x_bar)`` after it (t0=10, kappa=0.75, gamma=0.05, as
    Stan and Pyro).  The update (:func:`dual_averaging_step`) is elementwise arithmetic on ``(chains,)``
    tensors on the chains' device.  ``shared=True`` feeds it the acceptance averaged over (live)
    chains, giving one step size.
    """

    def __init__(self, eps: Tensor, target_accept: float, shared: bool, t0: float = 10.0, kappa: float = 0.75,
                 gamma: float = 0.05) -> None:
        self.shared = shared
        self.target_accept = float(target_accept)
        self.t0, self.kappa, self.gamma = float(t0), float(kappa), float(gamma)
        start = eps[:1] if shared else eps
        self.prox_center = torch.log(10.0 * start)
        zero = torch.zeros_like(self.prox_center)
        self.state = DualAveragingState(zero, zero, zero, 0)
        self._n_chains = eps.shape[0]

    def _expand(self, x: Tensor) -> Tensor:
        return x.exp().expand(self._n_chains) if self.shared else x.exp()

    @property
    def constants(self) -> tuple[float, bool, float, float, float, int]:
        """``(target_accept, shared, t0, kappa, gamma, chains)``: what a fused block's graph fixes."""
        return self.target_accept, self.shared, self.t0, self.kappa, self.gamma, self._n_chains

    def step(self, state: DualAveragingState, accept_prob: Tensor, live: Tensor) -> tuple[DualAveragingState, Tensor]:
        """The pure update: ``(state, acceptance, live chains) -> (next state, next eps (chains,))``."""
        g = self.target_accept - acceptance_statistic(accept_prob, live, self.shared)
        state = dual_averaging_step(state, g, self.prox_center, self.t0, self.kappa, self.gamma)
        return state, self._expand(state.x_t)

    def update(self, accept_prob: Tensor, live: Tensor) -> Tensor:
        """Take one step's acceptance probabilities ``(chains,)``; return the next eps ``(chains,)``."""
        self.state, eps = self.step(self.state, accept_prob, live)
        return eps

    def state_dict(self) -> dict:
        """The dual-averaging state (tensors and the step count)."""
        s = self.state
        return {"g_avg": s.g_avg, "x_t": s.x_t, "x_avg": s.x_avg, "t": int(s.t), "prox_center": self.prox_center}

    def load_state_dict(self, d: dict) -> None:
        device = self.prox_center.device
        if "_g_avg" in d:  # a state saved by 0.2.0.dev0 (Pyro's DualAveraging fields)
            d = {"g_avg": d["_g_avg"], "x_t": d["_x_t"], "x_avg": d["_x_avg"], "t": d["_t"],
                 "prox_center": d["prox_center"]}
        like = self.prox_center
        as_tensor = lambda v: (v if isinstance(v, Tensor) else torch.full_like(like, float(v))).to(device)  # noqa: E731
        self.prox_center = as_tensor(d["prox_center"])
        self.state = DualAveragingState(as_tensor(d["g_avg"]), as_tensor(d["x_t"]), as_tensor(d["x_avg"]), int(d["t"]))

    def final(self) -> Tensor:
        """The adapted step size ``exp(x_bar)`` ``(chains,)``, to use after warm-up."""
        return self._expand(self.state.x_avg)


def check_target_accept(target_accept: float) -> float:
    value = float(target_accept)
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    return value
