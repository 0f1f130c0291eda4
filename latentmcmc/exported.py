"""Deprecated module name (latentmcmc 0.1): torch.export models now load from :mod:`latentmcmc.io.torch_export`."""

import warnings

from .io.torch_export import ExportedModule, check_latent_shape, load_exported

warnings.warn("latentmcmc.exported is now latentmcmc.io.torch_export; the old name will be removed in latentmcmc 0.3",
              DeprecationWarning, stacklevel=2)

__all__ = ["load_exported", "ExportedModule", "check_latent_shape"]
