r"""Latent priors: the distribution ``p(z)`` of a generator's latents, and the space the chains move in.

Chains move in an unconstrained space ``u``; the latent is ``z = T(u)`` with ``T = biject_to(support of
p)`` (the identity on the real line, a scaled sigmoid on an interval), as Pyro and NumPyro sample a
bounded prior.  The prior's density in ``u`` is ``p(T(u)) |det J_T(u)|``, so the latent energy there is

.. math::  E(u) = \beta\, U(G(T(u))) + E_0(u), \qquad E_0(u) = -\log p(T(u)) - \log\lvert\det J_T(u)\rvert

and every sampler, annealing path (from ``E_0`` to ``E``), AIS estimate and independent proposal is
written in ``u`` unchanged.  Draws are reported in the prior's space, ``z = T(u)``.  For the default
``N(0, I)`` prior ``T`` is the identity and ``E_0(u) = 0.5|u|^2`` (no constant, as always), so runs
with it are bit for bit those of earlier versions.

:data:`PRIORS` is the table of priors the command line names (``--prior normal``, ``uniform:LO,HI``,
``student-t:DF``, ``truncated-normal:PSI``); in Python ``prior=`` also takes any continuous
``torch.distributions.Distribution`` whose batch and event shapes are ``()`` (one law per coordinate) or
the latent shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, StudentT, Uniform, biject_to, constraints

__all__ = ["PRIORS", "PriorKind", "LatentPrior", "TruncatedStandardNormal", "as_prior", "parse_prior",
           "STANDARD_NORMAL", "standard_prior_energy", "check_prior", "prior_name", "prior_spellings"]

_EDGE = 30.0  # |u| given to a draw that lands exactly on the support's edge (float rounding): sigmoid(-30) ~ 1e-13


def standard_prior_energy(z: Tensor) -> Tensor:
    """``0.5 |z|^2`` per chain (all trailing dimensions): the energy of ``N(0, I)``, up to a constant."""
    flat = z.reshape(z.shape[0], -1)
    return 0.5 * torch.linalg.vecdot(flat, flat)


class TruncatedStandardNormal(Distribution):
    r"""``N(0, 1)`` restricted to ``[-psi, psi]``: density ``phi(z) / (Phi(psi) - Phi(-psi))`` there.

    The truncation trick as a prior (BigGAN draws ``z`` this way by resampling ``|z| > psi``); drawn by
    the inverse CDF.
    """

    arg_constraints = {"psi": constraints.positive}
    has_rsample = True

    def __init__(self, psi: float | Tensor, validate_args: bool | None = None) -> None:
        self.psi = torch.as_tensor(psi, dtype=torch.get_default_dtype())
        super().__init__(self.psi.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(-self.psi, self.psi)

    @property
    def _mass(self) -> Tensor:
        return torch.special.ndtr(self.psi) - torch.special.ndtr(-self.psi)

    @property
    def mean(self) -> Tensor:
        return torch.zeros_like(self.psi)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        low = torch.special.ndtr(-self.psi)
        uniform = torch.rand(shape, dtype=self.psi.dtype, device=self.psi.device)
        return torch.special.ndtri(low + uniform * self._mass).clamp(-self.psi, self.psi)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -0.5 * value * value - 0.5 * math.log(2 * math.pi) - torch.log(self._mass).to(value.dtype)


@dataclass(frozen=True)
class PriorKind:
    """A prior the command line names: ``name[:ARGS]``, what it is, its arguments and how it is built."""

    summary: str
    arguments: str  # the text after the colon, as help shows it ("" for none)
    build: Callable[..., Distribution | None]  # floats -> the distribution (None: the standard normal)
    count: int  # how many numbers follow the colon
    check: Callable[..., str | None]  # floats -> what is wrong with them, or None
    truncates: bool | None  # the truncation baseline z -> psi z keeps draws in the support, towards the centre
    # (None: read off the distribution, e.g. uniform:-1,1 yes, uniform:0,1 no)


def _no_check(*args: float) -> str | None:
    return None


PRIORS: dict[str, PriorKind] = {
    "normal": PriorKind("N(0, I), the usual prior (the default)", "", lambda: None, 0, _no_check, True),
    "uniform": PriorKind("U(LO, HI) per coordinate (DCGAN-era models: uniform:-1,1)", "LO,HI",
                         lambda lo, hi: Uniform(lo, hi, validate_args=False), 2,
                         lambda lo, hi: None if lo < hi else f"must have LO < HI, got uniform:{lo:g},{hi:g}", None),
    "student-t": PriorKind("Student-t with DF degrees of freedom per coordinate (heavy tails)", "DF",
                           lambda df: StudentT(df, validate_args=False), 1,
                           lambda df: None if df > 0 else f"must have DF > 0, got student-t:{df:g}", True),
    "truncated-normal": PriorKind("N(0, 1) per coordinate truncated to [-PSI, PSI] (the truncation trick as a prior)",
                                  "PSI", lambda psi: TruncatedStandardNormal(psi, validate_args=False), 1,
                                  lambda psi: None if psi > 0 else f"must have PSI > 0, got truncated-normal:{psi:g}", True),
}
"""The named priors (``--prior``): name -> :class:`PriorKind`."""


def prior_spellings() -> str:
    """``normal, uniform:LO,HI, student-t:DF, truncated-normal:PSI`` (for help and messages)."""
    return ", ".join(name + (":" + kind.arguments if kind.arguments else "") for name, kind in PRIORS.items())


def parse_prior(text: str) -> "LatentPrior | None":
    """``"uniform:-1,1"`` -> its :class:`LatentPrior`; ``"none"`` -> None (no prior term); a ValueError naming the problem."""
    name, _, args = str(text).strip().partition(":")
    if name == "none" and not args:
        return None
    if name not in PRIORS:
        raise ValueError(f"must be none or one of {prior_spellings()}, got {text!r}")
    kind = PRIORS[name]
    try:
        numbers = [float(a) for a in args.split(",")] if args.strip() else []
    except ValueError:
        numbers = None
    if numbers is None or len(numbers) != kind.count or not all(math.isfinite(v) for v in numbers):
        spelled = name + (":" + kind.arguments if kind.arguments else "")
        raise ValueError(f"must be written {spelled} ({kind.count} finite number{'s' if kind.count != 1 else ''} "
                         f"after the colon), got {text!r}")
    problem = kind.check(*numbers)
    if problem:
        raise ValueError(problem)
    canonical = name + (":" + ",".join(f"{v:g}" for v in numbers) if numbers else "")
    return LatentPrior(kind.build(*numbers), canonical, kind.truncates)


class LatentPrior:
    r"""A latent prior ``p(z)`` and the unconstrained space ``u`` the chains move in, ``z = T(u)``.

    ``T = biject_to(support)``; the prior energy in ``u`` is
    ``E_0(u) = -log p(T(u)) - log|det J_T(u)|`` summed over the latent's coordinates, whose ``exp(-E_0)``
    is the prior's density in ``u`` (normalised; for the standard normal the constant is dropped, ``0.5|u|^2``).

    Args:
        distribution: a continuous ``torch.distributions.Distribution`` over one coordinate (batch and
            event shape ``()``) or over the whole latent; None for ``N(0, I)``.
        name: how runs, files and messages spell it (default: the distribution's repr).
        truncates: whether the truncation baseline ``z -> psi z`` means something (a prior centred on 0,
            symmetric, with a support that scaling towards 0 keeps); default: read off the distribution.
    """

    def __init__(self, distribution: Distribution | None = None, name: str | None = None,
                 truncates: bool | None = None) -> None:
        if distribution is not None and not isinstance(distribution, Distribution):
            raise ValueError(f"prior must be True, False, a name such as 'uniform:-1,1', or a "
                             f"torch.distributions.Distribution, got {type(distribution).__name__}")
        self.distribution = distribution
        if distribution is None:
            self.transform = None
            self.name = "normal"
            self.truncates = True
            return
        support = distribution.support
        if support.is_discrete:
            raise ValueError(f"prior {type(distribution).__name__} is discrete; a latent prior must be continuous")
        try:
            self.transform = biject_to(support)
        except NotImplementedError:
            raise ValueError(f"prior {type(distribution).__name__}: no bijection to its support {support} is known "
                             "to torch.distributions.biject_to") from None
        self.name = name or repr(distribution)
        self.truncates = _centred(distribution) if truncates is None else bool(truncates)

    @property
    def standard(self) -> bool:
        """True for ``N(0, I)`` (``T`` the identity, ``E_0 = 0.5|u|^2``)."""
        return self.distribution is None

    def __repr__(self) -> str:
        return f"LatentPrior({self.name})"

    def check(self, latent_shape: tuple[int, ...]) -> None:
        """A ValueError unless the distribution's shape is ``()`` (per coordinate) or ``latent_shape``."""
        if self.standard:
            return
        shape = tuple(self.distribution.batch_shape + self.distribution.event_shape)
        if shape not in ((), tuple(latent_shape)):
            raise ValueError(f"prior {self.name} has shape {shape} (batch + event); it must be () (one law per "
                             f"coordinate) or the latent shape {tuple(latent_shape)}")

    # ------------------------------------------------------------------ the map and the energy
    def to_latent(self, u: Tensor) -> Tensor:
        """``z = T(u)``: chain states in the prior's space."""
        return u if self.standard else self.transform(u)

    def from_latent(self, z: Tensor) -> Tensor:
        """``u = T^{-1}(z)``; a point on the support's edge (float rounding) maps to ``+-30`` rather than ``+-inf``."""
        if self.standard:
            return z
        u = self.transform.inv(z)
        return torch.nan_to_num(u, nan=0.0, posinf=_EDGE, neginf=-_EDGE)

    def energy(self, u: Tensor) -> Tensor:
        """``E_0(u)`` per chain, differentiable in ``u``."""
        if self.standard:
            return standard_prior_energy(u)
        z = self.transform(u)
        log_density = self.distribution.log_prob(z) + self.transform.log_abs_det_jacobian(u, z)
        return -log_density.reshape(u.shape[0], -1).sum(1)

    def value_and_grad(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``E_0(u)`` and its gradient (``(u``'s own for the standard normal)."""
        if self.standard:
            return standard_prior_energy(u), u
        def total(v: Tensor) -> tuple[Tensor, Tensor]:
            e = self.energy(v)
            return e.sum(), e

        grad, (_, energy) = torch.func.grad_and_value(total, has_aux=True)(u)  # traceable inside fused blocks
        return energy.detach(), grad

    # ------------------------------------------------------------------ draws
    def sample(self, n: int, latent_shape: tuple[int, ...], rng: torch.Generator | None = None,
               dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """``n`` draws of the prior, as chain states ``u`` of shape ``(n, *latent_shape)``, from ``rng``.

        ``N(0, I)`` draws straight from ``rng``; another distribution draws from torch's global generator
        in a forked random state seeded from ``rng``, so a seed's draws repeat and the caller's state is left alone.
        """
        device = torch.device(device) if device is not None else (rng.device if rng is not None else torch.device("cpu"))
        dtype = dtype or torch.get_default_dtype()
        if self.standard:
            return torch.randn((n, *latent_shape), generator=rng, dtype=dtype, device=device)
        self.check(latent_shape)
        shape = (n,) if tuple(self.distribution.batch_shape + self.distribution.event_shape) else (n, *latent_shape)
        seed = int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device if rng is not None else "cpu"))
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            z = self.distribution.sample(shape)
        return self.from_latent(z.to(device=device, dtype=dtype)).reshape(n, *latent_shape)

    def log_prob(self, u: Tensor) -> Tensor:
        """The prior's normalised log density in ``u`` per chain (for importance weights): ``-E_0(u)`` plus the
        standard normal's constant."""
        e = self.energy(u)
        if self.standard:
            e = e + 0.5 * u[0].numel() * math.log(2 * math.pi)
        return -e

    def truncate(self, u: Tensor, psi: float) -> Tensor:
        """The truncation trick in the prior's space, ``z -> psi z``, as chain states; a ValueError where it means nothing."""
        if not self.truncates:
            raise ValueError(f"the truncation baseline (z -> psi z) means nothing under prior {self.name}: it is not "
                             "centred on 0 with a support that scaling keeps; leave truncation out of the methods")
        return self.from_latent(psi * self.to_latent(u))


def _centred(distribution: Distribution) -> bool:
    """Whether ``z -> psi z`` (psi < 1) keeps draws in the support and moves them towards a mode at 0."""
    try:
        mean = distribution.mean
    except (NotImplementedError, AttributeError):
        return False
    if not bool(torch.all(mean == 0)):
        return False
    support = distribution.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.real:
        return True
    low, high = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    if low is None or high is None:
        return False
    return bool(torch.all(torch.as_tensor(low) == -torch.as_tensor(high)))


STANDARD_NORMAL = LatentPrior()


def as_prior(prior: Any) -> LatentPrior | None:
    """``prior=`` as given (True, False, a name such as ``"uniform:-1,1"``, a Distribution or a LatentPrior)
    -> a :class:`LatentPrior`, or None for no prior term."""
    if prior is True:
        return STANDARD_NORMAL
    if prior is False or prior is None:
        return None
    if isinstance(prior, LatentPrior):
        return prior
    if isinstance(prior, str):
        return parse_prior(prior)
    return LatentPrior(prior)


def check_prior(value: Any) -> Any:
    """A check of ``prior=``: True/False, a Distribution or LatentPrior pass; a name is validated and spelled canonically
    (``"normal"`` -> True, ``"none"`` -> False, ``"uniform:-1.0,1"`` -> ``"uniform:-1,1"``)."""
    if isinstance(value, bool) or isinstance(value, (Distribution, LatentPrior)):
        return value
    if isinstance(value, str):
        parsed = parse_prior(value)
        if parsed is None:
            return False
        return True if parsed.standard else parsed.name
    raise ValueError(f"must be True, False, one of {prior_spellings()}, none, or a torch.distributions.Distribution, "
                     f"got {type(value).__name__}")


def prior_name(prior: Any) -> str:
    """How a run's fingerprint and files spell ``prior=`` (``normal``, ``none``, ``uniform:-1,1``, a repr)."""
    p = as_prior(prior)
    return "none" if p is None else p.name
