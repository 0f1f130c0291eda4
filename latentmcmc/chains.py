"""What a sampler run recorded, and what can be computed from it alone."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .evaluations import Evaluations
from .io import arviz as arviz_io

__all__ = ["Chains", "LogNormalizer", "Evaluations", "load_run", "MIN_IMPORTANCE_ESS", "MIN_IMPORTANCE_ESS_SHARE",
           "chains_to_state",
           "chains_from_state"]

MIN_IMPORTANCE_ESS = 10.0
"""Below this importance ESS the delta-method standard error of an AIS estimate is not trusted."""

MIN_IMPORTANCE_ESS_SHARE = 0.2
"""Below this share of the chains as importance ESS the error bar is not trusted either: on grid truth
(``benchmarks/ais_reliability.py``, 288 estimates) every estimate off by more than 4 standard errors that the
Pareto rule let through had a share of 0.07-0.10, while AnnealedMALA's never fell below 0.53."""


class _LogNormalizerFields(NamedTuple):
    estimate: float
    stderr: float
    importance_ess: float  # (sum w)^2 / sum w^2 over the chains' importance weights


class LogNormalizer(_LogNormalizerFields):
    """AIS estimate of ``log Z`` with its Monte Carlo standard error, the weights' effective sample size,
    the Pareto shape ``pareto_k`` of their tail, and ``reliable``: whether the estimate and its error bar
    can be trusted (see :meth:`Chains.log_normalizer`).  Unpacks as ``(estimate, stderr, importance_ess)``.
    """

    def __new__(cls, estimate: float, stderr: float, importance_ess: float, pareto_k: float = float("nan"),
                reliable: bool = True):
        self = super().__new__(cls, estimate, stderr, importance_ess)
        self.pareto_k = pareto_k
        self.reliable = reliable
        return self

    def __repr__(self) -> str:
        return (f"LogNormalizer(estimate={self.estimate}, stderr={self.stderr}, importance_ess={self.importance_ess}, "
                f"pareto_k={self.pareto_k}, reliable={self.reliable})")

    @property
    def ess(self) -> float:
        """Deprecated name (latentmcmc 0.1) of :attr:`importance_ess`."""
        warnings.warn("LogNormalizer.ess is now LogNormalizer.importance_ess; .ess will be removed in latentmcmc 0.3",
                      DeprecationWarning, stacklevel=2)
        return self.importance_ess


@dataclass
class Chains:
    """Draws and statistics of a run, chains first: ``(chains, draws, ...)``, on the chains' device.

    Warm-up is excluded from ``draws``, ``energy``, ``accept_prob`` and ``diverging``; with
    ``keep_warmup=True`` it is kept in the ``warmup_*`` fields.  ``evaluations`` counts the forward
    and backward passes through the model per chain over the whole run, so that budgets compare
    across kernels (a MALA step is one of each, an i-SIR step with 10 candidates 9 forward passes).  ``acceptance_rate`` and
    ``divergences`` count every post-warm-up step, thinned or not.  A run with ``stream=k`` keeps the
    per-draw fields (``draws``, ``energy``, ``accept_prob``, ``diverging``, ``warmup_*``) in host
    memory and the per-chain fields on the chains' device.
    """

    draws: Tensor  # (chains, draws, *latent_shape)
    energy: Tensor  # (chains, draws)
    accept_prob: Tensor  # (chains, draws); 1.0 for unadjusted Langevin
    diverging: Tensor  # (chains, draws) bool
    eps: Tensor  # (chains,) step size used after warm-up
    last: Tensor  # (chains, *latent_shape) final state
    acceptance_rate: Tensor  # (chains,) mean acceptance probability after warm-up
    divergences: Tensor  # (chains,) int64, divergent steps after warm-up
    warmup_divergences: Tensor  # (chains,) int64
    frozen: Tensor  # (chains,) bool: unadjusted Langevin chains stopped at a non-finite energy
    sampler: str = ""
    seed: int | None = None
    warmup: int = 0
    steps: int = 0
    thin: int = 1
    warmup_draws: Tensor | None = None  # (chains, warmup draws, *latent_shape)
    warmup_energy: Tensor | None = None
    warmup_accept_prob: Tensor | None = None
    warmup_eps: Tensor | None = None  # (chains, warmup draws) step size used at each kept warm-up step
    warmup_diverging: Tensor | None = None  # (chains, warmup draws) bool
    log_weights: Tensor | None = None  # (chains,) annealed importance log-weights
    mh_accept_rate: Tensor | None = None  # (chains,) Langevin only: acceptance MALA would have had
    last_energy: Tensor | None = None  # (chains,) energy of ``last``
    jump_rate: Tensor | None = None  # (chains,) global kernels: mean probability that the global move left the point
    evaluations: Evaluations | None = None  # forward and backward passes per chain, init and warm-up included
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return self.draws.shape[0]

    @property
    def num_draws(self) -> int:
        return self.draws.shape[1]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.draws.shape[2:])

    def stuck(self) -> Tensor:
        """``(chains,)`` True where the chain's recorded draws never changed (every proposal rejected); all False
        with fewer than two draws."""
        if self.num_draws < 2:
            return torch.zeros(self.num_chains, dtype=torch.bool, device=self.draws.device)
        draws = self.draws.reshape(self.num_chains, self.num_draws, -1)
        return (draws == draws[:, :1]).all(2).all(1)

    def log_normalizer(self) -> LogNormalizer:
        r"""AIS estimate of ``log Z``, ``Z = \int e^{-E(z)} dz / (2\pi)^{d/2}`` (relative to the N(0, I) prior).

        ``log Z_hat = logsumexp(w) - log n`` over the ``n`` chains' log-weights ``w``; the standard
        error is the delta-method ``sqrt(1/ESS - 1/n)`` with ``ESS = (sum e^w)^2 / sum e^{2w}``.  Valid
        when the run started from exact draws of N(0, I) (annealed samplers only).

        ``reliable`` is False, with a RuntimeWarning naming the ESS, when the Pareto shape ``k`` of the
        weights' tail exceeds ``min(1 - 1/log10(n), 0.7)`` (PSIS, Vehtari et al. 2024: the estimate
        then depends on weights the run has not drawn), when the importance ESS is below 10 (the
        delta method's normal approximation needs more than a handful of effective draws), or when it
        is below a fifth of the chains (:data:`MIN_IMPORTANCE_ESS_SHARE`: with weights that uneven a
        Pareto fit to 500 of them still missed estimates 4-8 standard errors off, biased low by the
        large weights not drawn).  On the demo model's grid-truth targets (288 estimates: both annealed
        samplers, beta 1, 3 and 10, 50 and 200 annealing steps, 24 seeds) every estimate flagged
        reliable was within 2.4 standard errors of the truth, and every AnnealedMALA estimate was
        flagged reliable (``benchmarks/ais_reliability.py``, ``tests/samplers/test_ais_truth.py``).
        """
        from .diagnostics.importance import pareto_k, pareto_k_threshold

        if self.log_weights is None:
            raise ValueError("this run has no importance weights; log_normalizer() needs an annealed sampler")
        w = self.log_weights.detach().to(torch.float64)
        n = w.numel()
        finite = torch.isfinite(w) | (w == float("-inf"))
        if not bool(finite.all()):
            raise ValueError("importance log-weights contain NaN or +inf; the log Z estimate is undefined")
        log_z = torch.logsumexp(w, 0) - math.log(n)
        ess = float(torch.exp(2 * torch.logsumexp(w, 0) - torch.logsumexp(2 * w, 0)))
        stderr = math.sqrt(max(1.0 / ess - 1.0 / n, 0.0))
        k = pareto_k(w)
        reliable = k <= pareto_k_threshold(n) and ess >= max(MIN_IMPORTANCE_ESS, MIN_IMPORTANCE_ESS_SHARE * n)
        if not reliable:
            if not math.isfinite(k) and ess >= MIN_IMPORTANCE_ESS_SHARE * n:
                advice = "too few chains to fit the weights' tail (about 25 are needed): run more chains"
            else:
                advice = "anneal more slowly (more warm-up steps)" + (
                    " or use AnnealedMALA" if self.sampler == "AnnealedLangevin" else "")
            warnings.warn(f"the AIS estimate of log Z is unreliable: importance ESS {ess:.1f} of {n} chains, Pareto k "
                          f"{k:.2f} (reliable: k up to {pareto_k_threshold(n):.2f} and an ESS of at least a fifth of the "
                          f"chains); its standard error means nothing: {advice}", RuntimeWarning, stacklevel=2)
        return LogNormalizer(float(log_z), stderr, ess, k, reliable)

    def importance_weights(self) -> Tensor:
        """Self-normalised importance weights ``(chains,)`` (annealed samplers), summing to 1."""
        if self.log_weights is None:
            raise ValueError("this run has no importance weights; use an annealed sampler")
        return torch.softmax(self.log_weights.to(torch.float64), 0)

    def to_inference_data(self, kind: str | None = None):
        """This run as ArviZ data: ``InferenceData`` on ArviZ 0.x, ``xarray.DataTree`` on 1.x."""
        return arviz_io.to_inference_data(self, kind)

    def save(self, path, kind: str | None = None):
        """Write the run to NetCDF (or Zarr for a ``.zarr`` path) atomically; see :func:`load`."""
        return arviz_io.save_run(self, path, kind)

    @staticmethod
    def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> "Chains":
        """Read a run written by :meth:`save` (NetCDF or Zarr, either ArviZ flavour)."""
        fields = arviz_io.read_run(path, device)
        if fields.get("evaluations") is not None:
            fields["evaluations"] = Evaluations(*fields["evaluations"])
        return Chains(**fields)

    @staticmethod
    def concat(runs: "list[Chains]") -> "Chains":
        """Runs of disjoint chains (blocks, ranks) as one run, chains in the given order.

        Every per-chain field is concatenated along the chain dimension; the runs must agree on the
        sampler, warm-up, steps, thinning and recorded draws.  ``seed`` is the first run's.
        """
        if not runs:
            raise ValueError("concat needs at least one run")
        first = runs[0]
        for other in runs[1:]:
            for name in ("sampler", "warmup", "steps", "thin", "num_draws"):
                if getattr(other, name) != getattr(first, name):
                    raise ValueError(f"cannot concatenate runs that differ in {name}: "
                                     f"{getattr(first, name)!r} vs {getattr(other, name)!r}")
        values = {}
        for f in dataclasses.fields(Chains):
            items = [getattr(r, f.name) for r in runs]
            if any(isinstance(item, Tensor) for item in items):
                if any(item is None for item in items):
                    raise ValueError(f"cannot concatenate runs where only some have {f.name}")
                values[f.name] = torch.cat(items)
            elif f.name == "extra":
                keys = set.intersection(*(set(r.extra) for r in runs))
                values[f.name] = {k: torch.cat([r.extra[k] for r in runs]) if isinstance(first.extra[k], Tensor)
                                  else first.extra[k] for k in keys}
            else:
                values[f.name] = items[0]
        if any(r.extra.get("interrupted") for r in runs):
            values["extra"]["interrupted"] = True
        return Chains(**values)

    def __repr__(self) -> str:
        acc = float(self.acceptance_rate.mean()) if self.acceptance_rate.numel() else float("nan")
        return (
            f"Chains(sampler={self.sampler!r}, chains={self.num_chains}, draws={self.num_draws}, "
            f"latent_shape={self.latent_shape}, warmup={self.warmup}, thin={self.thin}, "
            f"acceptance={acc:.3f}, divergences={int(self.divergences.sum())}, device={self.draws.device})"
        )


def chains_to_state(chains: Chains) -> dict[str, Any]:
    """A :class:`Chains` as plain data and tensors (for run-state files read with ``weights_only=True``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Chains):
        value = getattr(chains, f.name)
        if f.name == "evaluations":
            value = None if value is None else tuple(value)
        elif f.name == "extra":
            value = {k: v for k, v in value.items() if v is None or isinstance(v, (Tensor, bool, int, float, str))}
        out[f.name] = value
    return out


def chains_from_state(d: dict[str, Any]) -> Chains:
    """The inverse of :func:`chains_to_state`."""
    d = dict(d)
    if d.get("evaluations") is not None:
        d["evaluations"] = Evaluations(*d["evaluations"])
    return Chains(**d)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu") -> Chains:
    """Read a run written by :meth:`Chains.save` (the same as :meth:`Chains.load`)."""
    return Chains.load(path, device)
