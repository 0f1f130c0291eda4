"""Batched gradient-based MCMC samplers on an energy E(z)."""

from .adaptation import StepSizeAdapter
from .annealed import AnnealedLangevin, AnnealedMALA
from .base import Sampler
from .langevin import Langevin
from .mala import MALA
from .schedules import geometric_schedule, linear_schedule, make_schedule, sigmoid_schedule
from .state import SamplerState, StepInfo

__all__ = [
    "Sampler", "Langevin", "MALA", "AnnealedLangevin", "AnnealedMALA", "SamplerState", "StepInfo",
    "StepSizeAdapter", "linear_schedule", "geometric_schedule", "sigmoid_schedule", "make_schedule",
]
