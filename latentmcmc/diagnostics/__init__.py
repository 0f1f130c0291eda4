"""Chain diagnostics in torch on the chains' device: ESS, R-hat, MCSE, acceptance, summary tables."""

from .acceptance import AcceptanceSummary, acceptance_summary, running_acceptance
from .convergence import (
    ESS_METHODS,
    RHAT_METHODS,
    ess,
    ess_rhat,
    mcse,
    rhat,
    rhat_nested,
)
from .importance import (
    importance_ess,
    pareto_k,
    pareto_k_threshold,
    systematic_resample,
)
from .summary import hdi, summary

__all__ = ["ESS_METHODS", "RHAT_METHODS", "ess", "ess_rhat", "rhat", "rhat_nested", "mcse", "importance_ess", "pareto_k", "pareto_k_threshold", "systematic_resample", "hdi", "summary", "acceptance_summary", "running_acceptance", "AcceptanceSummary"]
