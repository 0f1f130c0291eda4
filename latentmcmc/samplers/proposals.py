"""Independent proposals for global moves (i-SIR, Ex2MCMC): the target's prior, any distribution object, a flow.

A proposal here draws ``n`` latents from the run's random-number generator and scores them:
``sample(n, rng, like, params) -> (n, *latent_shape)`` and ``log_prob(z, params) -> (n,)``, where
``params`` are the run's kernel parameters (a fitted flow's tensors live there; fixed proposals ignore
them).  User objects only need
``.sample(shape)`` and ``.log_prob(z)`` (``torch.distributions`` objects, zuko flows, ...): they draw
from torch's global generator, so :class:`DistributionProposal` seeds it from the run's ``rng`` in a
forked random state, which keeps a seed's draws reproducible and leaves the caller's state alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..priors import STANDARD_NORMAL, LatentPrior

__all__ = ["LatentProposal", "PriorProposal", "DistributionProposal", "as_proposal"]


class LatentProposal:
    """Base of the proposals global kernels use: ``sample(n, rng, like, params)``, ``log_prob(z, params)``,
    ``check(like, params)``, and ``init_params(eps, z)`` (the run's parameters; a fixed proposal adds none)."""

    def init_params(self, eps: Tensor, z: Tensor) -> Any:
        from .kernel import KernelParams

        return KernelParams(eps)

    def sample(self, n: int, rng: torch.Generator | None, like: Tensor, params: Any = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def log_prob(self, z: Tensor, params: Any = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, like: Tensor, params: Any = None) -> None:
        """Raise a ValueError naming the problem if the proposal does not fit latents shaped like ``like``."""


class PriorProposal(LatentProposal):
    """The target's prior in the chains' space (:class:`~latentmcmc.priors.LatentPrior`), drawn from the run's ``rng``.

    For ``N(0, I)``: ``log q(z) = -|z|^2/2 - (d/2) log(2 pi)``; for another prior ``log q(u) = -E_0(u)``.
    """

    def __init__(self, prior: LatentPrior = STANDARD_NORMAL) -> None:
        self.prior = prior

    def sample(self, n: int, rng: torch.Generator | None, like: Tensor, params: Any = None) -> Tensor:
        return self.prior.sample(n, tuple(like.shape[1:]), rng, like.dtype, like.device)

    def log_prob(self, z: Tensor, params: Any = None) -> Tensor:
        return self.prior.log_prob(z)



def _seed_from(rng: torch.Generator | None) -> int:
    """A seed for torch's global generator drawn from ``rng`` (one host read per step on a GPU)."""
    device = rng.device if rng is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=rng, device=device))


class DistributionProposal(LatentProposal):
    """Any object with ``sample(shape)`` and ``log_prob(z) -> (n,)`` (``torch.distributions``, zuko flows).

    Samples are drawn in a forked global random state seeded from the run's ``rng``.
    """

    def __init__(self, distribution: Any, name: str = "proposal") -> None:
        for method in ("sample", "log_prob"):
            if not callable(getattr(distribution, method, None)):
                raise ValueError(f"{name} must have .sample(shape) and .log_prob(z) (a torch.distributions object "
                                 f"or a flow); {type(distribution).__name__} has no .{method}")
        self.distribution = distribution
        self.name = name

    def sample(self, n: int, rng: torch.Generator | None, like: Tensor, params: Any = None) -> Tensor:
        devices = [like.device] if like.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(_seed_from(rng))
            z = self.distribution.sample((n,))
        return z.reshape((n,) + tuple(like.shape[1:])).to(dtype=like.dtype)

    def log_prob(self, z: Tensor, params: Any = None) -> Tensor:
        return self.distribution.log_prob(z.reshape(z.shape[0], -1) if self._flat(z) else z)

    def _flat(self, z: Tensor) -> bool:
        """Whether the distribution's events are flat ``(d,)`` vectors over a shaped latent (reshape in and out)."""
        return z.dim() > 2 and tuple(self._event) != tuple(z.shape[1:])

    _event: tuple = ()

    def check(self, like: Tensor, params: Any = None) -> None:
        """Fail now, with the argument named, if draws or densities do not fit ``(chains, *latent_shape)``."""
        latent = tuple(like.shape[1:])
        with torch.no_grad():
            z = self.distribution.sample((2,))
        if not isinstance(z, Tensor):
            raise ValueError(f"{self.name}.sample((2,)) returned {type(z).__name__}, not a tensor")
        if z.device != like.device:
            raise ValueError(f"{self.name} draws on {z.device} but the chains are on {like.device}; "
                             "move the proposal's parameters there")
        if tuple(z.shape[1:]) != latent and not (z[0].numel() == math.prod(latent) and z.dim() == 2):
            raise ValueError(f"{self.name} has event shape {tuple(z.shape[1:])}; the latent shape is {latent}")
        self._event = tuple(z.shape[1:])  # a flat (d,) distribution over a shaped latent is reshaped in and out
        with torch.no_grad():
            lp = self.log_prob(z.reshape((2,) + latent).to(like.dtype))
        if not isinstance(lp, Tensor) or tuple(lp.shape) != (2,):
            shape = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
            raise ValueError(f"{self.name}.log_prob returned shape {shape} for 2 latents; expected (2,), one log "
                             "density per latent (wrap a per-coordinate distribution in "
                             "torch.distributions.Independent(..., 1))")


def as_proposal(proposal: Any, name: str = "proposal", prior: LatentPrior = STANDARD_NORMAL):
    """``None`` -> the target's ``prior`` (``N(0, I)`` by default); a proposal of this module (or a flow proposal)
    passes through; else a :class:`DistributionProposal`."""
    if proposal is None:
        return PriorProposal(prior)
    if isinstance(proposal, LatentProposal):
        return proposal
    return DistributionProposal(proposal, name)
