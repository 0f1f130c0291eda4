"""Step-size adaptation by dual averaging, for one shared step size or one per chain."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

with warnings.catch_warnings():
    # importing pyro imports tqdm.autonotebook for pyro's own MCMC progress bars, which in a notebook
    # without ipywidgets warns "IProgress not found" about bars we never show
    warnings.filterwarnings("ignore", message="IProgress not found")
    from pyro.ops.dual_averaging import DualAveraging

__all__ = ["StepSizeAdapter"]


class StepSizeAdapter:
    r"""Dual averaging of ``log eps`` towards a target acceptance (Hoffman & Gelman 2014, sec. 3.2).

    With ``H_t = target_accept - a_t`` (``a_t`` the acceptance probability of step ``t``):

    .. math::
        x_t = \mu - \frac{\sqrt t}{\gamma}\,\frac{1}{t + t_0}\sum_{i\le t} H_i,\qquad
        \bar x_t = t^{-\kappa} x_t + (1 - t^{-\kappa})\,\bar x_{t-1},\qquad \mu = \log(10\,\epsilon_0)

    ``eps = exp(x_t)`` during warm-up and ``exp(x_bar)`` after it.  The update is Pyro's
    :class:`~pyro.ops.dual_averaging.DualAveraging` (t0=10, kappa=0.75, gamma=0.05), which is plain
    elementwise arithmetic and so runs batched on ``(chains,)`` tensors on the chains' device.
    ``shared=True`` feeds it the acceptance averaged over (live) chains, giving one step size.
    """

    def __init__(self, eps: Tensor, target_accept: float, shared: bool, t0: float = 10.0, kappa: float = 0.75,
                 gamma: float = 0.05) -> None:
        self.shared = shared
        self.target_accept = float(target_accept)
        start = eps[:1] if shared else eps
        self._scheme = DualAveraging(prox_center=torch.log(10.0 * start), t0=t0, kappa=kappa, gamma=gamma)
        self._n_chains = eps.shape[0]

    def _expand(self, x: Tensor) -> Tensor:
        return x.exp().expand(self._n_chains) if self.shared else x.exp()

    def update(self, accept_prob: Tensor, live: Tensor) -> Tensor:
        """Take one step's acceptance probabilities ``(chains,)``; return the next eps ``(chains,)``."""
        if self.shared:
            weight = live.to(accept_prob.dtype)
            accept = (accept_prob * weight).sum().div(weight.sum().clamp(min=1.0)).reshape(1)
        else:
            accept = accept_prob
        self._scheme.step(self.target_accept - accept)
        x_t, _ = self._scheme.get_state()
        return self._expand(x_t)

    def state_dict(self) -> dict:
        """The dual-averaging state (Pyro's DualAveraging fields: tensors and numbers)."""
        return {k: v for k, v in vars(self._scheme).items()}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self._scheme, k, v.to(self._scheme.prox_center.device) if isinstance(v, Tensor) else v)

    def final(self) -> Tensor:
        """The adapted step size ``exp(x_bar)`` ``(chains,)``, to use after warm-up."""
        _, x_avg = self._scheme.get_state()
        return self._expand(x_avg)


def check_target_accept(target_accept: float) -> float:
    value = float(target_accept)
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    return value
