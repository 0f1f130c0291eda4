"""Batched MCMC samplers on an energy E(z): kernels (``kernel``, ``metropolis``, one module each), the
driver that runs them, and the table of named samplers (``registry``)."""

from .adaptation import StepSizeAdapter
from .annealed import AnnealedLangevin, AnnealedMALA
from .base import Sampler
from .ex2mcmc import Ex2MCMC
from .flex2mcmc import FlEx2MCMC
from .hmc import HMC
from .isir import ISIR
from .kernel import Kernel, KernelParams, SamplerState, StepInfo, gradient_state
from .langevin import Langevin, LangevinProposer
from .mala import MALA
from .metropolis import MetropolisHastings, Proposal, Uncalibrated, mh_accept
from .monitor import Until
from .options import COMPILE, EPS, Option, boolean, integer, positive_number
from .registry import SAMPLERS, SamplerEntry, SamplerOptions, make_sampler
from .schedules import (
    SCHEDULES,
    geometric_schedule,
    linear_schedule,
    make_schedule,
    sigmoid_schedule,
)
from .tempering import TemperedTarget

__all__ = [
    "Sampler", "Langevin", "MALA", "AnnealedLangevin", "AnnealedMALA", "HMC", "ISIR", "Ex2MCMC", "FlEx2MCMC", "SamplerState", "StepInfo", "Kernel",
    "Until", "LangevinProposer", "MetropolisHastings", "Uncalibrated", "mh_accept", "TemperedTarget", "Proposal",
    "KernelParams", "gradient_state", "Option", "EPS", "COMPILE", "integer", "positive_number", "boolean",
    "SAMPLERS", "SamplerEntry", "SamplerOptions", "make_sampler", "StepSizeAdapter", "SCHEDULES", "linear_schedule", "geometric_schedule", "sigmoid_schedule", "make_schedule",
]
