"""Names kept from latentmcmc 0.1 for one more release, each with a DeprecationWarning."""

from __future__ import annotations

import warnings

import torch

__all__ = ["resolve_rng"]


def resolve_rng(rng: torch.Generator | None, generator: torch.Generator | None, stacklevel: int = 3) -> torch.Generator | None:
    """``rng``, or the deprecated ``generator=`` keyword of latentmcmc 0.1 (with a DeprecationWarning).

    ``generator`` named both the random-number generator and the GAN's network in 0.1; random-number
    generators are ``rng`` now.
    """
    if generator is not None:
        warnings.warn("the random-number generator argument is now called rng=; generator= will be removed "
                      "in latentmcmc 0.3", DeprecationWarning, stacklevel=stacklevel)
        if rng is not None:
            raise ValueError("give rng= only (generator= is its deprecated name)")
        return generator
    return rng
