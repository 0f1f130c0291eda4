"""latentmcmc: refine a trained generator's samples by MCMC in its latent space.

Conventions: everything is an energy E(z) (lower is better, density exp(-E)); the step size eps is
the noise variance of the Langevin proposal ``z' = z - (eps/2) grad E(z) + sqrt(eps) xi``; chains are
the leading dimension.
"""

from ._version import __version__
from .chains import Chains, LogNormalizer
from .energy import LatentEnergy, Target, as_target
from .samplers import (
    HMC,
    ISIR,
    MALA,
    AnnealedLangevin,
    AnnealedMALA,
    Ex2MCMC,
    FlEx2MCMC,
    Langevin,
    Sampler,
    SamplerState,
    StepInfo,
)

__all__ = [
    "LatentEnergy", "Target", "as_target", "Langevin", "MALA", "AnnealedLangevin", "AnnealedMALA", "HMC", "ISIR",
    "Ex2MCMC", "FlEx2MCMC",
    "Sampler", "SamplerState", "StepInfo", "Chains", "LogNormalizer", "__version__",
]
