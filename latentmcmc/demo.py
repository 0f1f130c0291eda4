"""The built-in demo model: a small energy-GAN trained on 25 Gaussians, shipped with the package.

``benchmarks/train_demo_model.py`` trained it (width-256 MLPs, the DIM entropy term, 8,000 steps at lr
2e-4, about 5 minutes on 2 CPU cores; it covers all 25 modes), keeping the generator and critic and
dropping the optimiser states; :func:`load_demo_models` returns it ready to refine.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn

__all__ = ["DEMO_CHECKPOINT", "demo_checkpoint", "load_demo_models"]

DEMO_CHECKPOINT = "demo_gaussians25.pt"


def demo_checkpoint() -> Path:
    """Path of the shipped demo checkpoint."""
    return Path(str(resources.files("latentmcmc") / "assets" / DEMO_CHECKPOINT))


def load_demo_models(device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """``(generator, critic, config)`` of the shipped demo model (25 Gaussians, 2-D latent)."""
    from .checkpoint import load_models

    return load_models(demo_checkpoint(), device)
