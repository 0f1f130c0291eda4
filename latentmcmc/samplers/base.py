"""The sampler interface and the run loop every sampler shares."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor

from ..chains import Chains
from ..energy import EnergyFn, Target, as_target, compile_target
from ..progress import progress_bar
from .adaptation import StepSizeAdapter, check_target_accept
from .recording import PhaseRecorder
from .state import SamplerState, StepInfo, acceptance_probability

__all__ = ["Sampler"]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (a fresh random seed when None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(_check_int("seed", seed, 0))
    return generator


class Sampler:
    """Base of the gradient-based samplers: validation, ``init``, and the batched ``run`` loop.

    Subclasses implement ``step(state, generator, eps, level) -> (state, StepInfo)``; annealed
    samplers also override :meth:`_levels` and :meth:`_log_weight_increment`.

    ``compile`` (False, True or a ``torch.compile`` mode such as ``"reduce-overhead"`` for CUDA
    graphs) compiles the energy's forward and backward pass; see :func:`~latentmcmc.energy.compile_target`
    for what stays equal to the eager run.
    """

    metropolis: bool = True
    default_target_accept: float = 0.574

    def __init__(self, energy: EnergyFn | Target, eps: float | Tensor = 0.01, compile: bool | str = False) -> None:
        target = as_target(energy)
        self.eps = self._check_eps(eps)
        self.target = compile_target(target, compile) if compile is not False else target

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_eps(eps: float | Tensor) -> Tensor:
        if isinstance(eps, bool) or not isinstance(eps, (int, float, Tensor)):
            raise ValueError(f"eps must be a positive number or a (chains,) tensor, got {type(eps).__name__}")
        t = torch.as_tensor(eps).detach()
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
        if t.dim() > 1:
            raise ValueError(f"eps must be a scalar or have shape (chains,), got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
            raise ValueError(f"eps must be finite and > 0, got {eps}")
        return t

    @property
    def shared_eps(self) -> bool:
        """True when one step size serves every chain (eps given as a scalar)."""
        return self.eps.dim() == 0

    def _eps_vector(self, z: Tensor) -> Tensor:
        chains = z.shape[0]
        if self.eps.dim() == 1 and self.eps.shape[0] != chains:
            raise ValueError(f"eps has shape ({self.eps.shape[0]},) but z0 has {chains} chains")
        return self.eps.to(device=z.device, dtype=z.dtype).expand(chains).clone()

    def _eps_for(self, state: SamplerState, eps: Tensor | float | None) -> Tensor:
        if eps is None:
            return self._eps_vector(state.z)
        if isinstance(eps, Tensor) and eps.dim() == 1 and eps.shape[0] == state.z.shape[0]:
            return eps
        return self._check_eps(eps).to(device=state.z.device, dtype=state.z.dtype).expand(state.z.shape[0])

    # ------------------------------------------------------------------ state
    def init(self, z0: Tensor) -> SamplerState:
        """Evaluate energy and gradient at ``z0`` ``(chains, *latent_shape)`` and check the target."""
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
        z0 = z0.detach()
        energy, grad = self.target.value_and_grad(z0)
        bad = ~(torch.isfinite(energy) & torch.isfinite(grad.reshape(z0.shape[0], -1)).all(1))
        if bool(bad.any()):
            idx = torch.nonzero(bad).flatten()[:10].tolist()
            raise ValueError(f"energy or its gradient is not finite at z0 for chains {idx}")
        self.target.check_independent_chains(z0)
        frozen = torch.zeros(z0.shape[0], dtype=torch.bool, device=z0.device)
        return SamplerState(z0.clone(), energy, grad, frozen)

    def step(
        self, state: SamplerState, generator: torch.Generator | None = None, eps: Tensor | float | None = None,
        level: Tensor | None = None, in_warmup: bool = False,
    ) -> tuple[SamplerState, StepInfo]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ annealing hooks
    def _levels(self, warmup: int, z: Tensor) -> Tensor | None:
        """Annealing level of each warm-up step, or None when the sampler does not anneal."""
        return None

    def _log_weight_increment(
        self, before: SamplerState, info: StepInfo, level_prev: Tensor | None, level: Tensor | None
    ) -> Tensor | None:
        return None

    # ------------------------------------------------------------------ run
    def run(
        self,
        z0: Tensor,
        steps: int = 1000,
        warmup: int = 0,
        adapt: bool | None = None,
        target_accept: float | None = None,
        thin: int = 1,
        seed: int | None = None,
        progress: bool | None = None,
        record: Literal["full", "last"] = "full",
        keep_warmup: bool = False,
        generator: torch.Generator | None = None,
        stream: int | None = None,
    ) -> Chains:
        """Run ``warmup`` steps (adapting eps by dual averaging when ``adapt``), then ``steps`` recorded steps.

        Args:
            z0: starting states ``(chains, *latent_shape)``; device and dtype of the run follow it.
            steps: recorded steps after warm-up (>= 1).
            warmup: steps before recording (annealed samplers anneal during them).
            adapt: adapt eps during warm-up; default True when ``warmup > 0``.  A scalar eps is
                adapted as one shared value, a ``(chains,)`` eps per chain.
            target_accept: acceptance probability adaptation aims at; default
                ``default_target_accept`` of the sampler (MALA 0.574, optimal for MALA by Roberts &
                Rosenthal 1998; unadjusted Langevin 0.9 of the acceptance MALA would have, which bounds
                its discretisation bias).
            thin: keep every ``thin``-th state.
            seed: seed of the run's random generator (same seed and device, same draws).
            progress: show a progress bar (default: when stderr is a terminal).
            record: ``"full"`` keeps the (thinned) draws; ``"last"`` keeps only the final state.
            keep_warmup: also keep the (thinned) warm-up draws in ``chains.warmup_*``.
            generator: a torch.Generator to use instead of ``seed``.
            stream: keep the recorded draws in host memory (pinned for CUDA chains) instead of on
                the chains' device, copied over asynchronously every ``stream`` kept draws, so a
                long GPU run is bounded by host memory; the draws are the same.
        """
        steps = _check_int("steps", steps, 1)
        warmup = _check_int("warmup", warmup, 0)
        thin = _check_int("thin", thin, 1)
        if stream is not None:
            stream = _check_int("stream", stream, 1)
        if record not in ("full", "last"):
            raise ValueError(f"record must be 'full' or 'last', got {record!r}")
        if record == "full" and thin > steps:
            raise ValueError(f"thin={thin} is larger than steps={steps}: no draw would be kept")
        target_accept = check_target_accept(self.default_target_accept if target_accept is None else target_accept)
        adapt = warmup > 0 if adapt is None else bool(adapt)
        if adapt and warmup == 0:
            raise ValueError("adapt=True needs warmup > 0 (adaptation happens during warm-up)")

        state = self.init(z0)
        device = state.z.device
        if generator is None:
            generator = make_generator(seed, device)
        elif generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device} but z0 is on {device}")
        run_seed = generator.initial_seed()

        eps = self._eps_vector(state.z)
        adapter = StepSizeAdapter(eps, target_accept, shared=self.shared_eps) if adapt else None
        levels = self._levels(warmup, state.z)
        log_weights = torch.zeros_like(state.energy) if levels is not None else None

        warm_rec = PhaseRecorder(state, warmup, thin, store=keep_warmup, store_eps=True, stream=stream)
        main_rec = PhaseRecorder(state, steps, thin, store=record == "full", store_eps=False,
                                 track_mh=not self.metropolis, stream=stream)

        total = warmup + steps
        bar = progress_bar(total, progress, type(self).__name__)
        refresh = max(1, total // 100)
        level_prev = torch.zeros((), dtype=state.z.dtype, device=device) if levels is not None else None
        interrupted = False
        i = 0
        try:
            for i in range(total):
                in_warmup = i < warmup
                level = levels[i] if (levels is not None and in_warmup) else None
                before = state
                state, info = self.step(state, generator, eps, level, in_warmup)
                if log_weights is not None:
                    inc = self._log_weight_increment(before, info, level_prev, level)
                    if inc is not None:
                        log_weights = log_weights + inc
                    level_prev = level
                if in_warmup:
                    warm_rec.record(i, state, info, eps)
                    if adapter is not None:
                        live = ~state.frozen
                        eps = adapter.update(self._adaptation_signal(info), live)
                        if i == warmup - 1:
                            eps = adapter.final()
                else:
                    main_rec.record(i - warmup, state, info, eps)
                if bar is not None and ((i + 1) % refresh == 0 or i + 1 == total):
                    rec = warm_rec if in_warmup else main_rec
                    done = (i + 1) if in_warmup else (i + 1 - warmup)
                    bar.set_postfix(
                        phase="warmup" if in_warmup else "sampling",
                        acc=f"{float(rec.accept_sum.mean()) / max(done, 1):.3f}",
                        eps=f"{float(eps.mean()):.3g}",
                        refresh=False,
                    )
                    bar.update((i + 1) - bar.n)
        except KeyboardInterrupt:
            if i < warmup:
                raise
            interrupted = True
            warnings.warn(
                f"run interrupted after {main_rec.count} of {steps} recorded steps; returning those draws",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            if bar is not None:
                bar.close()
            warm_rec.flush()
            main_rec.flush()

        chains = self._finish(state, eps, warm_rec, main_rec, record, keep_warmup, run_seed, warmup, steps, thin,
                              log_weights)
        if interrupted:
            chains = _truncate(chains, main_rec.count // thin)
            chains.extra["interrupted"] = True
        _warn_divergences(chains)
        return chains

    def _adaptation_signal(self, info: StepInfo) -> Tensor:
        """Acceptance statistic for dual averaging: MALA's accept prob, or Langevin's would-be one."""
        return info.accept_prob if self.metropolis else acceptance_probability(info.log_accept_ratio)

    def _finish(self, state, eps, warm_rec, main_rec, record, keep_warmup, seed, warmup, steps, thin, log_weights):
        if record == "full":
            draws, energy = main_rec.draws, main_rec.energy
            accept_prob, diverging = main_rec.accept_prob, main_rec.diverging
        else:
            draws, energy = state.z.unsqueeze(1).clone(), state.energy.unsqueeze(1).clone()
            accept_prob = main_rec.last_accept_prob.unsqueeze(1).clone()
            diverging = main_rec.divergences.unsqueeze(1) > 0
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
            sampler=type(self).__name__,
            seed=seed,
            warmup=warmup,
            steps=steps,
            thin=thin,
            warmup_draws=warm_rec.draws if keep_warmup else None,
            warmup_energy=warm_rec.energy if keep_warmup else None,
            warmup_accept_prob=warm_rec.accept_prob if keep_warmup else None,
            warmup_eps=warm_rec.eps if keep_warmup else None,
            warmup_diverging=warm_rec.diverging if keep_warmup else None,
            log_weights=log_weights,
            mh_accept_rate=None if self.metropolis else main_rec.rate(main_rec.mh_accept_sum),
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
            f"{n_frozen} of {chains.num_chains} chains froze after a divergent step (non-finite energy or gradient, or energy error > 1000); their later "
            "draws repeat the last finite state (see chains.frozen). Lower eps or check the energy.",
            RuntimeWarning,
            stacklevel=3,
        )
    elif n_div:
        warnings.warn(
            f"{n_div} divergent transitions after warm-up (non-finite energy or gradient, or energy error > 1000, at a proposal; "
            "rejected). See chains.divergences.",
            RuntimeWarning,
            stacklevel=3,
        )
