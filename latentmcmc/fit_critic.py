r"""A critic for a generator that has none: a discriminator of real data against the generator's samples.

The optimal logistic discriminator between data and a generator's samples has the logit
``log p_data(x) - log p_G(x)``, so with a fitted critic

.. math::  E(z) = -\mathrm{logit}(G(z)) + \tfrac12 |z|^2

(``LatentEnergy(G, critic, critic_output="logit")`` at beta 1) targets the data distribution pulled back to
the latent space: exact where ``G`` covers the data's support and the critic is optimal (Azadi et al. 2019,
Che et al. 2020).  :func:`fit_critic` fits one: a network chosen by the data's shape (an MLP for flat data, a
small convolutional net for images, spectral norm on every layer and no batch statistics), a head on the
frozen features of the user's extractor, or an existing discriminator fine-tuned (``init``, as DRS does on
its frozen generator).  The loss is the logistic one, real against ``G(z)`` for fresh ``z ~ N(0, I)``;
a held-out part of the real data and a fixed set of held-out generated samples measure it every
``eval_every`` steps, and the critic of the best held-out log-loss is kept (early stopping after
``patience`` evaluations without improvement).

Its limits: a critic that cannot tell real from generated gives a flat target (refinement changes
nothing); one that separates them almost perfectly gives a target that MCMC exploits (samples pushed to
whatever the critic scores as real, which need not look real).  So the fit stops early on held-out
log-loss, uses spectral norm (and optionally a gradient penalty on real data), reports a calibration
error, and warns when the held-out accuracy saturates.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .critics import CRITIC_OUTPUTS, Negated, energy_critic, one_per_sample
from .datafiles import data_fingerprint
from .priors import STANDARD_NORMAL, LatentPrior, as_prior, prior_name

__all__ = ["fit_critic", "FittedCritic", "critic_network", "logit_of", "SATURATED_ACCURACY", "export_critic"]

SATURATED_ACCURACY = 0.98
"""Held-out accuracy from which the fit warns: a critic that separates real from generated this well gives a
target that refinement can exploit."""

MIN_HELD_OUT = 100
"""Fewer real samples held out than this (as many generated ones beside them) are flagged: the held-out accuracy's
standard error then passes 0.035 and the early stopping follows noise."""


def _sn(layer: nn.Module, on: bool = True) -> nn.Module:
    return spectral_norm(layer) if on else layer


def critic_network(data_shape: tuple[int, ...], width: int = 256, normalized: bool | None = None) -> nn.Module:
    """An MLP for flat data, a small convolutional net for images ``(C, H, W)``; no batch statistics.

    ``normalized``: spectral norm on every layer (default: for images only).  Spectral norm bounds how
    fast the logit can change, which keeps an image critic from scoring tiny pixel changes as "real";
    on low-dimensional data it keeps the logit from reaching the log density ratio (a 2-D mixture: the
    fitted target's TV to the truth was 0.49 with it and 0.04 without, ``benchmarks/critic_fit_study.py``).
    """
    sn = (len(data_shape) == 3) if normalized is None else normalized
    if len(data_shape) == 3:
        c, h, w = data_shape
        layers: list[nn.Module] = [_sn(nn.Conv2d(c, 32, 4, 2, 1), sn), nn.LeakyReLU(0.2),
                                   _sn(nn.Conv2d(32, 64, 4, 2, 1), sn), nn.LeakyReLU(0.2)]
        if min(h, w) >= 32:
            layers += [_sn(nn.Conv2d(64, 128, 4, 2, 1), sn), nn.LeakyReLU(0.2)]
        body = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = body(torch.zeros(1, c, h, w)).shape[1]
        return nn.Sequential(body, _sn(nn.Linear(flat, 1), sn), nn.Flatten(0))
    d = math.prod(data_shape)
    return nn.Sequential(nn.Flatten(), _sn(nn.Linear(d, width), sn), nn.LeakyReLU(0.2), _sn(nn.Linear(width, width), sn),
                         nn.LeakyReLU(0.2), _sn(nn.Linear(width, 1), sn), nn.Flatten(0))


class FeatureHead(nn.Module):
    """A small head on a frozen feature extractor: ``logit = head(features(x))``."""

    def __init__(self, features: nn.Module, dim: int, width: int = 128) -> None:
        super().__init__()
        self.features = features.requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(dim, width), nn.LeakyReLU(0.2), nn.Linear(width, 1), nn.Flatten(0))

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x)  # frozen parameters, but the gradient in x flows (refinement needs it)
        return self.head(f.reshape(f.shape[0], -1))


def logit_of(critic: nn.Module, kind: str) -> nn.Module:
    """A module computing the realness logit of a critic whose output is of ``kind`` (:data:`CRITIC_OUTPUTS`)."""
    if kind not in CRITIC_OUTPUTS:
        raise ValueError(f"unknown critic output {kind!r}; choose one of {', '.join(CRITIC_OUTPUTS)}")
    if kind == "logit":
        return critic
    energy, _ = energy_critic(critic, kind)
    return Negated(energy)  # logit = -U


def _as_logits(out: Tensor, n: int) -> Tensor:
    if not one_per_sample(out.shape, n):
        raise ValueError(f"the critic returned shape {tuple(out.shape)} for {n} samples; expected ({n},), ({n}, 1) or "
                         f"({n}, 1, 1, 1)")
    return out.reshape(n)


def _generated(generator: nn.Module, latent_shape: tuple[int, ...], n: int, rng: torch.Generator, device,
               data_shape: tuple[int, ...], prior: LatentPrior = STANDARD_NORMAL) -> Tensor:
    z = prior.to_latent(prior.sample(n, tuple(latent_shape), rng)).to(device)
    with torch.no_grad():
        x = generator(z)
    return x.reshape(n, *data_shape)


def _calibration_error(prob: Tensor, label: Tensor, bins: int = 10) -> float:
    """Expected calibration error: the mean over 10 equal-width bins of |mean prob - fraction real|, weighted by size."""
    edges = torch.linspace(0, 1, bins + 1, device=prob.device)
    which = torch.bucketize(prob.clamp(0, 1), edges[1:-1])
    error = 0.0
    for b in range(bins):
        inside = which == b
        if bool(inside.any()):
            error += float(inside.double().mean()) * abs(float(prob[inside].double().mean())
                                                          - float(label[inside].double().mean()))
    return error


@torch.no_grad()
def _logits_and_labels(critic: nn.Module, real: Tensor, fake: Tensor, batch: int = 1024) -> tuple[Tensor, Tensor]:
    """The critic's logits (eval mode, float64) on real then generated samples, and their 1/0 labels."""
    critic.eval()
    logits = torch.cat([_as_logits(critic(x[i:i + batch]), x[i:i + batch].shape[0])
                        for x in (real, fake) for i in range(0, x.shape[0], batch)]).double()
    return logits, torch.cat([torch.ones(real.shape[0]), torch.zeros(fake.shape[0])]).to(logits)


def evaluate(critic: nn.Module, real: Tensor, fake: Tensor, batch: int = 1024) -> dict[str, float]:
    """Held-out log-loss, accuracy and calibration error of ``critic`` on real against generated samples."""
    logits, label = _logits_and_labels(critic, real, fake, batch)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, label))
    accuracy = float(((logits > 0).double() == label).double().mean())
    return {"log_loss": loss, "accuracy": accuracy, "calibration_error": _calibration_error(torch.sigmoid(logits), label)}


def _digest(module) -> str:
    if not isinstance(module, nn.Module):
        return f"callable:{getattr(module, '__qualname__', type(module).__name__)}"
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 else b"")
    return h.hexdigest()[:16]


@dataclass
class FittedCritic:
    """The fitted critic (outputs a realness logit, higher = more real; no parametrisations left) and its report."""

    critic: nn.Module
    report: dict[str, Any] = field(default_factory=dict)


def fit_critic(generator: nn.Module, real: Tensor, latent_shape: tuple[int, ...], *,
               data_shape: tuple[int, ...] | None = None, features: nn.Module | None = None,
               init: nn.Module | None = None, init_output: str = "probability", steps: int = 2000, seed: int = 0,
               batch_size: int = 256, lr: float = 2e-4, holdout: float = 0.2, penalty: float = 0.0,
               eval_every: int = 50, patience: int = 10, width: int = 256, normalized: bool | None = None,
               calibrate: bool = False, device: str | torch.device | None = None,
               progress: bool | None = None, prior: Any = True) -> FittedCritic:
    r"""Fit a discriminator of ``real`` against ``generator``'s samples; see the module docstring.

    Args:
        generator: ``(n, *latent_shape) -> (n, ...)``, frozen (only evaluated).
        real: real samples ``(n, ...)``, viewed as ``data_shape`` (default: the generator's output shape).
        latent_shape: the generator's latent shape; ``z`` is drawn from ``prior``.
        prior: the generator's latent prior (``True`` for N(0, I); a name of
            :data:`~latentmcmc.priors.PRIORS` such as ``"uniform:-1,1"``, or a distribution).
        features: a frozen feature extractor ``x -> (n, d)``: the critic is a small head on it.
        init: an existing discriminator to fine-tune, outputting ``init_output`` (``probability``, ``logit``
            or ``energy``); its logit is what is trained.
        steps: the most gradient steps; early stopping may end sooner.
        holdout: the share of ``real`` held out (and as many generated samples), for early stopping and the report.
        penalty: weight of a zero-centred gradient penalty on real data (R1).
        normalized: spectral norm in the default network (None: for images only; see :func:`critic_network`).
        calibrate: apply the Platt scaling ``a l(x) + b`` fitted on the held-out samples (always fitted and reported:
            ``a`` far from 1 says the logit is not a calibrated log density ratio).  Off by default: on the digits
            the scaled critic (``a`` 11.0) drew 1,759 of 2,000 chains to one class; see README, "A generator without a
            critic".
        eval_every, patience: evaluate the held-out loss every ``eval_every`` steps; stop after ``patience``
            evaluations without improvement.

    Returns a :class:`FittedCritic`: the critic of the best held-out log-loss (``critic(x)`` is a logit) and
    ``report`` (held-out accuracy, log-loss, calibration error, the same at the start, the step kept (0 when
    no step beat the start, as for an ``init`` already at its best), steps run, seconds, seed,
    fingerprints of the data and the generator, warnings).
    """
    from .progress import progress_bar

    t0 = time.perf_counter()
    latent_prior = as_prior(prior) or STANDARD_NORMAL  # prior=False still draws z ~ N(0, I)
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 2), ("eval_every", eval_every, 1),
                             ("patience", patience, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    check_holdout(holdout)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (penalty >= 0 and math.isfinite(penalty)):
        raise ValueError(f"penalty must be a finite number >= 0, got {penalty}")
    params_of_g = list(generator.parameters()) if isinstance(generator, nn.Module) else []
    device = torch.device(device) if device is not None else next((p.device for p in params_of_g), torch.device("cpu"))
    latent_shape = tuple(latent_shape)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        probe = generator(torch.zeros(2, *latent_shape, device=device))
    data_shape = tuple(data_shape) if data_shape is not None else tuple(probe.shape[1:])
    from .datafiles import fit_to

    real = fit_to(real, data_shape, "the real data").to(device)
    n = real.shape[0]
    n_held = max(1, int(round(holdout * n)))
    if n - n_held < 2:
        raise ValueError(f"holdout {holdout} of {n} real samples leaves {n - n_held} to train on (at least 2 are "
                         "needed): give a smaller holdout or more samples")
    order = torch.randperm(n, generator=rng).to(device)
    held_real, train_real = real[order[:n_held]], real[order[n_held:]]
    held_fake = _generated(generator, latent_shape, n_held, rng, device, data_shape, latent_prior)

    torch.manual_seed(seed)  # the network's initialisation
    if init is not None:
        with _without_torch_treespec_notice():
            critic = logit_of(copy.deepcopy(init), init_output)
        critic.requires_grad_(True)
        kind = f"fine-tuned discriminator ({init_output})"
    elif features is not None:
        with torch.no_grad():
            dim = features(real[:2]).reshape(2, -1).shape[1]
        critic = FeatureHead(features, dim)
        kind = f"head on {dim} frozen features"
    else:
        critic = critic_network(data_shape, width, normalized)
        kind = ("convolutional" if len(data_shape) == 3 else "MLP") + (
            ", spectral norm" if (len(data_shape) == 3 if normalized is None else normalized) else "")
    critic = critic.to(device)
    params = [p for p in critic.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the critic has no parameters to fit")
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    loss_fn = nn.BCEWithLogitsLoss()
    batch = min(batch_size, train_real.shape[0])
    start = evaluate(critic, held_real, held_fake)  # step 0: a fit never keeps a critic worse than its start
    best = (start["log_loss"], 0, copy.deepcopy(critic.state_dict()), start)
    history, stale, step = [{"step": 0, **start}], 0, 0
    bar = progress_bar(steps, progress, "fit-critic")
    try:
        for step in range(1, steps + 1):
            critic.train()
            pick = torch.randint(0, train_real.shape[0], (batch,), generator=rng).to(device)
            x_real = train_real[pick]
            x_fake = _generated(generator, latent_shape, batch, rng, device, data_shape, latent_prior)
            if penalty:
                x_real = x_real.detach().requires_grad_(True)
            logits = _as_logits(critic(torch.cat([x_real, x_fake])), 2 * batch)
            labels = torch.cat([torch.ones(batch), torch.zeros(batch)]).to(logits)
            loss = loss_fn(logits, labels)
            if penalty:
                (grad,) = torch.autograd.grad(logits[:batch].sum(), x_real, create_graph=True)
                loss = loss + 0.5 * penalty * grad.reshape(batch, -1).square().sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % eval_every == 0 or step == steps:
                held = evaluate(critic, held_real, held_fake)
                history.append({"step": step, **held})
                if bar is not None:
                    bar.set_postfix(loss=f"{held['log_loss']:.3f}", acc=f"{held['accuracy']:.3f}", refresh=False)
                if held["log_loss"] < best[0] - 1e-4:
                    best, stale = (held["log_loss"], step, copy.deepcopy(critic.state_dict()), held), 0
                else:
                    stale += 1
                    if stale >= patience:
                        break
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    critic.load_state_dict(best[2])
    critic.eval()
    held = best[3]
    _remove_parametrizations(critic)
    critic, held, scaling = _platt_scaling(critic, held_real, held_fake, held, apply=calibrate)
    report: dict[str, Any] = {
        "critic": kind, "parameters": sum(p.numel() for p in critic.parameters() if p.requires_grad),
        "held_out": {"accuracy": held["accuracy"], "log_loss": held["log_loss"],
                     "accuracy_stderr": accuracy_stderr(held["accuracy"], 2 * n_held),
                     "calibration_error": held["calibration_error"], "real": n_held, "generated": n_held},
        "held_out_at_start": {k: start[k] for k in ("accuracy", "log_loss", "calibration_error")},
        "platt_scaling": scaling,
        "step": best[1], "steps_run": step, "steps": steps, "early_stopped": step < steps,
        "seconds": time.perf_counter() - t0, "seed": seed, "lr": lr, "batch_size": batch, "penalty": penalty,
        "real_samples": n, "data_shape": list(data_shape), "latent_shape": list(latent_shape),
        "prior": prior_name(prior),
        "data_fingerprint": data_fingerprint(real), "generator_fingerprint": _digest(generator),
        "history": history, "warnings": [],
    }
    n_train = n - n_held
    if n_train < MIN_HELD_OUT:
        message = (f"only {n_train} real sample{'s' if n_train > 1 else ''} left to train on ({n_held} of {n} held out, "
                   f"holdout {holdout:g}): a critic fitted on so few says little about the data; train on at least "
                   f"{MIN_HELD_OUT} (a smaller holdout or more samples)")
        report["warnings"].append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    if n_held < MIN_HELD_OUT:
        message = (f"only {n_held} real sample{'s' if n_held > 1 else ''} held out ({holdout:g} of {n}): the held-out accuracy "
                   f"({held['accuracy']:.3f} +- {report['held_out']['accuracy_stderr']:.3f}) and the early stopping "
                   f"rest on too few samples to trust; hold out at least {MIN_HELD_OUT} (a larger holdout or more "
                   "samples)")
        report["warnings"].append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    elif held["accuracy"] >= SATURATED_ACCURACY:  # (with too few held out, the warning above says it all)
        message = (f"the fitted critic separates real from generated samples almost perfectly (held-out accuracy "
                   f"{held['accuracy']:.3f}): refinement can push samples to whatever it scores as real; look at the "
                   "images, refine at a lower beta, or fit with fewer steps")
        report["warnings"].append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return FittedCritic(critic, report)


def check_holdout(holdout: float, label: str = "holdout") -> float:
    """``holdout`` if it is a share in (0, 1) (NaN is not); else a ValueError naming ``label``."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"{label} must be in (0, 1), a share of the real samples, got {holdout}")
    return holdout


def accuracy_stderr(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` predictions, Agresti-Coull's: from ``(k + 2) / (n + 4)``, so
    that 0 or ``n`` right (p = 0 or 1) on a few samples does not read as certain (the plain ``sqrt(p(1-p)/n)`` is 0)."""
    p = (accuracy * n + 2.0) / (n + 4.0)
    return math.sqrt(p * (1.0 - p) / (n + 4.0))


def _platt_scaling(critic: nn.Module, real: Tensor, fake: Tensor, held: dict,
                   apply: bool) -> tuple[nn.Module, dict, dict | None]:
    """Platt scaling ``a l(x) + b`` of the critic's logit fitted on the held-out samples, as a diagnostic (``a`` far
    from 1: the logit is not a calibrated log density ratio) and, with ``apply``, applied: returns the critic, its
    held-out numbers and the scaling (None when the slope is not positive: the critic ranks nothing)."""
    from .calibration import PlattScaled, platt_fit

    slope, intercept = platt_fit(*_logits_and_labels(critic, real, fake))
    if not slope > 0:
        return critic, held, None
    scaling = {"slope": slope, "intercept": intercept, "applied": apply}
    if not apply:
        return critic, held, scaling
    scaled = PlattScaled(critic, slope, intercept).eval()
    before = {f"{k}_before": held[k] for k in ("log_loss", "calibration_error")}
    return scaled, evaluate(scaled, real, fake), {**scaling, **before}


def _remove_parametrizations(module: nn.Module) -> None:
    """Spectral norm's parametrisations replaced by the weights they give (plain modules export and load anywhere)."""
    from torch.nn.utils import parametrize

    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations.keys()):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)


@contextlib.contextmanager
def _without_torch_treespec_notice():
    """torch's own deprecation notice (not ours to act on) when an exported program is copied or re-exported."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        yield


def export_critic(critic: nn.Module, example: Tensor, path) -> None:
    """Save ``critic`` with torch.export, its batch dimension dynamic: ``(n, *data_shape) -> (n,)`` logits."""
    critic = critic.eval()
    batch = torch.export.Dim("batch", min=1)
    with _without_torch_treespec_notice():
        program = torch.export.export(critic, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
