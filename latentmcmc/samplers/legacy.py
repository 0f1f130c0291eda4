"""Kernels and proposers written against the 0.2.0.dev kernel contract, which passed ``eps`` where ``params`` now go.

Such a kernel's ``draw_noise(state, rng)`` takes no parameters and its ``step(target, state, eps, noise)``
(a proposer's ``propose``) takes the step size itself.  :func:`as_kernel` and :func:`as_proposer` wrap
them so that the driver's one call convention serves them too, with a DeprecationWarning; they tune
nothing but eps.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch import Tensor

from .kernel import KernelParams, evaluations_of

__all__ = ["as_kernel", "as_proposer", "takes_params"]


def takes_params(obj: Any) -> bool:
    """Whether ``obj.draw_noise`` takes the run's parameters (the current contract) or only ``(state, rng)``."""
    try:
        parameters = inspect.signature(obj.draw_noise).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin: assume the current contract
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _warn(what: str, obj: Any) -> None:
    warnings.warn(f"{type(obj).__name__} follows the 0.2.0.dev {what} contract (draw_noise(state, rng), eps passed to "
                  f"{'step' if what == 'kernel' else 'propose'}); take params instead (params.eps is the step size): "
                  "the old form will stop working in latentmcmc 0.3", DeprecationWarning, stacklevel=4)


class _LegacyKernel:
    def __init__(self, kernel: Any) -> None:
        self.inner = kernel
        self.calibrated = kernel.calibrated
        self.fusable = bool(getattr(kernel, "fusable", False))

    def init_params(self, eps: Tensor, z: Tensor) -> KernelParams:
        return KernelParams(eps)

    def init(self, target, z: Tensor, params: KernelParams):
        return self.inner.init(target, z)

    def draw_noise(self, state, rng, params: KernelParams):
        return self.inner.draw_noise(state, rng)

    def step(self, target, state, params: KernelParams, noise):
        return self.inner.step(target, state, params.eps, noise)

    def evaluations(self, noise):
        return evaluations_of(self.inner, noise)


class _LegacyProposer(_LegacyKernel):
    def __init__(self, proposer: Any) -> None:
        self.inner = proposer
        self.fusable = bool(getattr(proposer, "fusable", False))

    def propose(self, target, state, params: KernelParams, noise):
        return self.inner.propose(target, state, params.eps, noise)


def as_kernel(kernel: Any) -> Any:
    """``kernel`` itself, or (0.2.0.dev contract) wrapped to take the run's parameters, with a warning."""
    if takes_params(kernel):
        return kernel
    _warn("kernel", kernel)
    return _LegacyKernel(kernel)


def as_proposer(proposer: Any) -> Any:
    """``proposer`` itself, or (0.2.0.dev contract) wrapped to take the run's parameters, with a warning."""
    if takes_params(proposer):
        return proposer
    _warn("proposer", proposer)
    return _LegacyProposer(proposer)
