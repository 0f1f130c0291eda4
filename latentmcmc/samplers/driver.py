"""The run loop: everything around the kernel's step (Pyro's ``MCMC`` beside its kernels).

The driver owns warm-up, step-size adaptation (dual averaging), annealing (a tempered target per
warm-up step), recording (thinned, last only, streamed), the progress bar, Ctrl-C and the divergence
warnings.  A kernel only maps ``(target, state, eps, noise)`` to ``(state, info)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from ..chains import Chains, Evaluations
from ..progress import progress_bar
from .adaptation import StepSizeAdapter, check_target_accept
from .kernel import GRADIENT_STEP, Kernel, SamplerState, acceptance_probability
from .recording import PhaseRecorder
from .tempering import TemperedTarget, ais_log_weight_increment

__all__ = ["RunSettings", "init_state", "sample", "make_rng", "check_int"]


def check_int(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def make_rng(seed: int | None, device: torch.device) -> torch.Generator:
    """A random-number generator on ``device`` seeded with ``seed`` (a fresh random seed when None)."""
    rng = torch.Generator(device=device)
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(check_int("seed", seed, 0))
    return rng


@dataclass(frozen=True)
class RunSettings:
    """The validated arguments of a run (see :meth:`~latentmcmc.samplers.Sampler.run`)."""

    steps: int
    warmup: int = 0
    adapt: bool = False
    target_accept: float = 0.574
    thin: int = 1
    record: Literal["full", "last"] = "full"
    keep_warmup: bool = False
    stream: int | None = None
    progress: bool | None = None

    @classmethod
    def checked(cls, steps: int, warmup: int, adapt: bool | None, target_accept: float, thin: int, record: str,
                keep_warmup: bool, stream: int | None, progress: bool | None) -> "RunSettings":
        steps = check_int("steps", steps, 1)
        warmup = check_int("warmup", warmup, 0)
        thin = check_int("thin", thin, 1)
        if stream is not None:
            stream = check_int("stream", stream, 1)
        if record not in ("full", "last"):
            raise ValueError(f"record must be 'full' or 'last', got {record!r}")
        if record == "full" and thin > steps:
            raise ValueError(f"thin={thin} is larger than steps={steps}: no draw would be kept")
        adapt = warmup > 0 if adapt is None else bool(adapt)
        if adapt and warmup == 0:
            raise ValueError("adapt=True needs warmup > 0 (adaptation happens during warm-up)")
        return cls(steps, warmup, adapt, check_target_accept(target_accept), thin, record, bool(keep_warmup),
                   stream, progress)


def check_start(z0: Tensor) -> Tensor:
    """``z0`` detached, or a ValueError saying what is wrong with it."""
    if not isinstance(z0, Tensor):
        raise ValueError(f"z0 must be a torch.Tensor of shape (chains, *latent_shape), got {type(z0).__name__}")
    if z0.dim() < 2:
        raise ValueError(
            f"z0 must have shape (chains, *latent_shape) with at least 2 dimensions, got shape {tuple(z0.shape)}"
        )
    if z0.shape[0] < 1 or z0[0].numel() < 1:
        raise ValueError(f"z0 must have at least one chain and one latent dimension, got shape {tuple(z0.shape)}")
    if not z0.is_floating_point():
        raise ValueError(f"z0 must be a floating-point tensor, got dtype {z0.dtype}")
    if not bool(torch.isfinite(z0).all()):
        raise ValueError("z0 contains NaN or infinite values")
    return z0.detach()


def init_state(kernel: Kernel, target, z0: Tensor) -> SamplerState:
    """The kernel's state at ``z0`` after checking ``z0``, the finiteness of E there, and chain independence."""
    z0 = check_start(z0)
    state = kernel.init(target, z0)
    bad = ~torch.isfinite(state.energy)
    if state.grad is not None:
        bad = bad | ~torch.isfinite(state.grad.reshape(z0.shape[0], -1)).all(1)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"energy or its gradient is not finite at z0 for chains {idx}")
    target.check_independent_chains(z0)
    return state


def freeze_divergent(state: SamplerState, diverging: Tensor) -> SamplerState:
    """Stop the chains whose step diverged (the policy for uncalibrated kernels after warm-up)."""
    return state._replace(frozen=state.frozen | diverging)


class WarmupAdapter(Protocol):
    """A kernel parameter tuned during warm-up besides eps (HMC's trajectory length, FlEx2MCMC's flow).

    ``update`` sees every warm-up transition (the state before it, after it, its info and the eps it
    ran with); ``finish`` fixes the parameter for the recorded steps, given the final eps.
    """

    def update(self, before: SamplerState, state: SamplerState, info, eps: Tensor) -> None: ...

    def finish(self, eps: Tensor) -> None: ...


def _evaluations(kernel: Kernel, noise) -> Evaluations:
    cost = getattr(kernel, "evaluations", None)
    return cost(noise) if cost is not None else GRADIENT_STEP


def _adaptation_signal(kernel: Kernel, info) -> Tensor:
    """The acceptance dual averaging steers: MH's, or for an uncalibrated kernel the one MH would have had."""
    return info.accept_prob if kernel.calibrated else acceptance_probability(info.log_accept_ratio)


class _Progress:
    """The progress bar of a run: phase, running acceptance and eps, refreshed once per 1% of the steps."""

    def __init__(self, total: int, enabled: bool | None, name: str) -> None:
        self.bar = progress_bar(total, enabled, name)
        self.total = total
        self.every = max(1, total // 100)

    def update(self, i: int, warmup: int, recorder: PhaseRecorder, eps: Tensor) -> None:
        if self.bar is None or not ((i + 1) % self.every == 0 or i + 1 == self.total):
            return
        in_warmup = i < warmup
        done = (i + 1) if in_warmup else (i + 1 - warmup)
        self.bar.set_postfix(phase="warmup" if in_warmup else "sampling",
                             acc=f"{float(recorder.accept_sum.mean()) / max(done, 1):.3f}",
                             eps=f"{float(eps.mean()):.3g}", refresh=False)
        self.bar.update((i + 1) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sample(kernel: Kernel, target, z0: Tensor, eps: Tensor, shared_eps: bool, settings: RunSettings,
           rng: torch.Generator, levels: Tensor | None, name: str,
           adapters: "list[WarmupAdapter] | None" = None, restart_adaptation_at: int | None = None) -> Chains:
    """Run ``settings.warmup`` then ``settings.steps`` steps of ``kernel`` from ``z0``; return what was recorded.

    ``eps`` is the starting step size ``(chains,)``; ``levels`` the annealing level of each warm-up
    step (None: no annealing); ``adapters`` tune other kernel parameters during warm-up (they are
    built by the sampler from the initial state: a callable ``(state, warmup) -> list``); at warm-up step
    ``restart_adaptation_at`` dual averaging starts afresh from the current eps.  See
    :meth:`~latentmcmc.samplers.Sampler.run` for the rest.
    """
    s = settings
    state = init_state(kernel, target, z0)
    evaluations = Evaluations(1, 0 if state.grad is None else 1)
    adapters = adapters(state, s.warmup) if callable(adapters) else list(adapters or [])
    adapter = StepSizeAdapter(eps, s.target_accept, shared=shared_eps) if s.adapt else None
    log_weights = torch.zeros_like(state.energy) if levels is not None else None
    warm_rec = PhaseRecorder(state, s.warmup, s.thin, store=s.keep_warmup, store_eps=True, stream=s.stream)
    main_rec = PhaseRecorder(state, s.steps, s.thin, store=s.record == "full", store_eps=False,
                             track_mh=not kernel.calibrated, stream=s.stream)
    total = s.warmup + s.steps
    progress = _Progress(total, s.progress, name)
    level_prev = torch.zeros((), dtype=state.z.dtype, device=state.z.device) if levels is not None else None
    interrupted = False
    i = 0
    try:
        for i in range(total):
            in_warmup = i < s.warmup
            if adapter is not None and i == restart_adaptation_at:
                adapter = StepSizeAdapter(eps, s.target_accept, shared=shared_eps)
            level = levels[i] if (levels is not None and in_warmup) else None
            before = state
            noise = kernel.draw_noise(state, rng)
            state, info = kernel.step(target if level is None else TemperedTarget(target, level), state, eps, noise)
            evaluations = evaluations + _evaluations(kernel, noise)
            if not kernel.calibrated and not in_warmup:
                state = freeze_divergent(state, info.diverging)
            if log_weights is not None:
                inc = ais_log_weight_increment(kernel.calibrated, before, info, level_prev, level)
                if inc is not None:
                    log_weights = log_weights + inc
                level_prev = level
            if in_warmup:
                warm_rec.record(i, state, info, eps)
                for other in adapters:
                    other.update(before, state, info, eps)
                if adapter is not None:
                    eps = adapter.update(_adaptation_signal(kernel, info), ~state.frozen)
                    if i == s.warmup - 1:
                        eps = adapter.final()
                if i == s.warmup - 1:
                    for other in adapters:
                        other.finish(eps)
            else:
                main_rec.record(i - s.warmup, state, info, eps)
            progress.update(i, s.warmup, warm_rec if in_warmup else main_rec, eps)
    except KeyboardInterrupt:
        if i < s.warmup:
            raise
        interrupted = True
        warnings.warn(f"run interrupted after {main_rec.count} of {s.steps} recorded steps; returning those draws",
                      RuntimeWarning, stacklevel=3)
    finally:
        progress.close()
        warm_rec.flush()
        main_rec.flush()

    chains = _chains(state, eps, warm_rec, main_rec, s, rng.initial_seed(), log_weights, kernel.calibrated, name)
    chains.evaluations = evaluations
    if interrupted:
        chains = _truncate(chains, main_rec.count // s.thin)
        chains.extra["interrupted"] = True
    _warn_divergences(chains)
    return chains


def _chains(state: SamplerState, eps: Tensor, warm_rec: PhaseRecorder, main_rec: PhaseRecorder, s: RunSettings,
            seed: int, log_weights: Tensor | None, calibrated: bool, name: str) -> Chains:
    if s.record == "full":
        draws, energy = main_rec.draws, main_rec.energy
        accept_prob, diverging = main_rec.accept_prob, main_rec.diverging
    else:
        draws, energy = state.z.unsqueeze(1).clone(), state.energy.unsqueeze(1).clone()
        accept_prob = main_rec.last_accept_prob.unsqueeze(1).clone()
        diverging = main_rec.divergences.unsqueeze(1) > 0
    keep = s.keep_warmup
    return Chains(
        draws=draws,
        energy=energy,
        accept_prob=accept_prob,
        diverging=diverging,
        eps=eps,
        last=state.z,
        acceptance_rate=main_rec.rate(main_rec.accept_sum),
        divergences=main_rec.divergences,
        warmup_divergences=warm_rec.divergences,
        frozen=state.frozen,
        sampler=name,
        seed=seed,
        warmup=s.warmup,
        steps=s.steps,
        thin=s.thin,
        warmup_draws=warm_rec.draws if keep else None,
        warmup_energy=warm_rec.energy if keep else None,
        warmup_accept_prob=warm_rec.accept_prob if keep else None,
        warmup_eps=warm_rec.eps if keep else None,
        warmup_diverging=warm_rec.diverging if keep else None,
        log_weights=log_weights,
        mh_accept_rate=None if calibrated else main_rec.rate(main_rec.mh_accept_sum),
        jump_rate=None if main_rec.jump_sum is None else main_rec.rate(main_rec.jump_sum),
        last_energy=state.energy,
        extra={"last_grad": state.grad},
    )


def _truncate(chains: Chains, n: int) -> Chains:
    chains.draws = chains.draws[:, :n]
    chains.energy = chains.energy[:, :n]
    chains.accept_prob = chains.accept_prob[:, :n]
    chains.diverging = chains.diverging[:, :n]
    return chains


def _warn_divergences(chains: Chains) -> None:
    n_div = int(chains.divergences.sum())
    n_frozen = int(chains.frozen.sum())
    if n_frozen:
        warnings.warn(
            f"{n_frozen} of {chains.num_chains} chains froze after a divergent step (non-finite energy or gradient, "
            "or energy error > 1000); their later draws repeat the last finite state (see chains.frozen). "
            "Lower eps or check the energy.",
            RuntimeWarning,
            stacklevel=4,
        )
    elif n_div:
        warnings.warn(
            f"{n_div} divergent transitions after warm-up (non-finite energy or gradient, or energy error > 1000, "
            "at a proposal; rejected). See chains.divergences.",
            RuntimeWarning,
            stacklevel=4,
        )
