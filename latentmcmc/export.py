"""Deprecated module name (latentmcmc 0.1): runs to ArviZ now live in :mod:`latentmcmc.io.arviz`."""

import warnings

from .chains import load_run
from .io.arviz import installed_arviz_kind, save_run, to_inference_data

warnings.warn("latentmcmc.export is now latentmcmc.io.arviz (load_run: Chains.load); the old name will be removed "
              "in latentmcmc 0.3", DeprecationWarning, stacklevel=2)

__all__ = ["to_inference_data", "save_run", "load_run", "installed_arviz_kind"]
