"""Chain diagnostics in torch on the chains' device: ESS, R-hat, MCSE, acceptance, summary tables."""

from .acceptance import AcceptanceSummary, acceptance_summary, running_acceptance
from .convergence import ess, mcse, rhat
from .summary import hdi, summary

__all__ = ["ess", "rhat", "mcse", "hdi", "summary", "acceptance_summary", "running_acceptance", "AcceptanceSummary"]
