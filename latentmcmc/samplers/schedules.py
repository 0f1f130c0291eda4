"""Annealing schedules: the levels ``0 < l_1 <= ... <= l_n = 1`` of the path from the prior to the target."""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch
from torch import Tensor

__all__ = ["linear_schedule", "geometric_schedule", "sigmoid_schedule", "make_schedule", "Schedule", "SCHEDULES"]

Schedule = Union[str, Callable[[int], Sequence[float] | Tensor], Sequence[float], Tensor]


def linear_schedule(n: int) -> Tensor:
    """``l_k = k / n`` for ``k = 1..n``."""
    return torch.arange(1, n + 1, dtype=torch.float64) / n


def geometric_schedule(n: int, start: float = 1e-3) -> Tensor:
    """``l_k = start ** (1 - (k-1)/(n-1))``: geometric from ``start`` to 1 (dense near 0, as AIS likes)."""
    if not 0.0 < start < 1.0:
        raise ValueError(f"geometric schedule start must be in (0, 1), got {start}")
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    return torch.logspace(math.log10(start), 0.0, n, dtype=torch.float64)


def sigmoid_schedule(n: int, sharpness: float = 4.0) -> Tensor:
    """Sigmoidal schedule of Grosse, Maddison & Salakhutdinov (2013), rescaled to end at 1.

    ``s_k = sigmoid(sharpness * (2k/n - 1))`` for ``k = 0..n``, ``l_k = (s_k - s_0) / (s_n - s_0)``.
    """
    k = torch.arange(0, n + 1, dtype=torch.float64)
    s = torch.sigmoid(sharpness * (2.0 * k / n - 1.0))
    return ((s - s[0]) / (s[-1] - s[0]))[1:]


SCHEDULES = {"linear": linear_schedule, "geometric": geometric_schedule, "sigmoid": sigmoid_schedule}


def make_schedule(schedule: Schedule, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Levels ``(n,)`` for ``n`` annealing steps from a name, a function ``n -> levels`` or the levels.

    Levels must be finite, within [0, 1], and end at exactly 1 so that the draws after annealing come
    from the target.
    """
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}, or pass a function "
                             "n -> levels or the levels")
        levels = SCHEDULES[schedule](n)
    elif callable(schedule):
        levels = torch.as_tensor(schedule(n), dtype=torch.float64)
    else:
        levels = torch.as_tensor(schedule, dtype=torch.float64)
    levels = levels.detach().to("cpu", torch.float64).reshape(-1)
    if levels.numel() != n:
        raise ValueError(f"schedule has {levels.numel()} levels; annealing over warmup={n} steps needs {n}")
    if not bool(torch.isfinite(levels).all()) or bool((levels < 0).any()) or bool((levels > 1).any()):
        raise ValueError("schedule levels must be finite and within [0, 1]")
    if float(levels[-1]) != 1.0:
        raise ValueError(f"schedule must end at level 1 (the target), ends at {float(levels[-1])}")
    return levels.to(device=device, dtype=dtype)
