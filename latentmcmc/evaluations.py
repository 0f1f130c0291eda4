"""Passes through the model per chain: the unit in which kernels' costs and comparison budgets are counted."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Evaluations"]


class Evaluations(NamedTuple):
    """Passes through the model: ``forward`` (energy) and ``backward`` (gradient) evaluations per chain."""

    forward: int
    backward: int

    def __add__(self, other: "Evaluations") -> "Evaluations":  # type: ignore[override]
        return Evaluations(self.forward + other.forward, self.backward + other.backward)

    @property
    def passes(self) -> int:
        """Forward plus backward passes: the budget unit of ``latentmcmc compare``."""
        return self.forward + self.backward
