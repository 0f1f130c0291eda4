"""The run loop: everything around the kernel's step (Pyro's ``MCMC`` beside its kernels).

The driver owns warm-up, step-size adaptation (dual averaging), annealing (a tempered target per
warm-up step), recording (thinned, last only, streamed), the progress bar, Ctrl-C and the divergence
warnings.  A kernel only maps ``(target, state, params, noise)`` to ``(state, info)``.

What defines a run is a value: the kernel's parameters (eps and whatever warm-up tunes besides it,
such as HMC's trajectory length or a flow's tensors) belong to the run (:attr:`Run.params`), are
passed to every step, saved in checkpoints and compared on resume; the sampler and its kernel are
never changed.  Every step, eager or fused, goes through :func:`~.block.run_steps` and then the same
bookkeeping (:meth:`Run._account`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from ..chains import Chains
from ..evaluations import Evaluations
from ..progress import progress_bar
from .adaptation import StepSizeAdapter, adaptation_signal, check_target_accept
from .block import Adaptation, BlockOutput, run_steps
from .fused import (
    AUTO_MIN_STEPS,
    DEFAULT_BLOCK,
    FusedBlock,
    auto_fuses,
    fusable,
    resolve_fuse,
    step_flops,
)
from .kernel import Kernel, SamplerState, StepInfo, evaluations_of
from .monitor import Monitor, Until
from .recording import RECORD_CHOICES, PhaseRecorder

__all__ = ["RunSettings", "Run", "init_state", "one_step", "sample", "make_rng", "check_int", "WarmupSettler",
           "WarmupAdapter"]


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
    record: str = "full"  # one of recording.RECORD_CHOICES
    keep_warmup: bool = False
    stream: int | None = None
    progress: bool | None = None
    auto_warmup: bool = False  # warmup is then the cap of a warm-up that ends when eps has settled
    monitor_every: int = 0  # online diagnostics every this many recorded steps (0: none unless stop rules)
    fuse: int | str | None = None  # steps per compiled block, "auto", or None (step by step); see .fused

    @classmethod
    def checked(cls, steps: int, warmup: int | str, adapt: bool | None, target_accept: float, thin: int, record: str,
                keep_warmup: bool, stream: int | None, progress: bool | None, max_warmup: int = 1000,
                monitor_every: int = 0, fuse: bool | int | str = False) -> "RunSettings":
        steps = check_int("steps", steps, 1)
        auto = warmup == "auto"
        if auto:
            warmup = check_int("max_warmup", max_warmup, 100)
            if adapt is False:
                raise ValueError("warmup='auto' ends warm-up when the adapted eps settles: it needs adapt")
        warmup = check_int("warmup", warmup, 0)
        monitor_every = check_int("monitor_every", monitor_every, 0)
        thin = check_int("thin", thin, 1)
        if stream is not None:
            stream = check_int("stream", stream, 1)
        if record not in RECORD_CHOICES:
            raise ValueError(f"record must be one of {', '.join(repr(r) for r in RECORD_CHOICES)}, got {record!r}")
        if record == "full" and thin > steps:
            raise ValueError(f"thin={thin} is larger than steps={steps}: no draw would be kept")
        adapt = warmup > 0 if adapt is None else bool(adapt)
        if adapt and warmup == 0:
            raise ValueError("adapt=True needs warmup > 0 (adaptation happens during warm-up)")
        return cls(steps, warmup, adapt, check_target_accept(target_accept), thin, record, bool(keep_warmup),
                   stream, progress, auto, monitor_every, resolve_fuse(fuse))


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


def init_state(kernel: Kernel, target, z0: Tensor, params: Any) -> SamplerState:
    """The kernel's state at ``z0`` after checking ``z0``, the finiteness of E there, and chain independence."""
    z0 = check_start(z0)
    state = kernel.init(target, z0, params)
    bad = ~torch.isfinite(state.energy)
    if state.grad is not None:
        bad = bad | ~torch.isfinite(state.grad.reshape(z0.shape[0], -1)).all(1)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"energy or its gradient is not finite at z0 for chains {idx}")
    target.check_independent_chains(z0)
    return state


def one_step(kernel: Kernel, target, state: SamplerState, params: Any, rng: torch.Generator | None,
             level: Tensor | None = None, freeze: bool = True) -> tuple[SamplerState, StepInfo]:
    """One transition of every chain through the driver's step path (:func:`~.block.run_steps`).

    ``level``: on the tempered target at that level; ``freeze``: an uncalibrated kernel's diverged chains
    stop (the policy after warm-up).
    """
    noise = kernel.draw_noise(state, rng, params)
    out = run_steps(kernel, target, state, params, [noise], freeze=freeze and not kernel.calibrated,
                    keep_states=False, levels=None if level is None else [level])
    return out.state, out.info(0)


class WarmupAdapter(Protocol):
    """A kernel parameter tuned during one run's warm-up besides eps (HMC's trajectory length, FlEx2MCMC's flow).

    Built afresh for every run (``Sampler.warmup_adapters``); it changes the run's parameters, never the
    sampler.  ``start(params)`` (optional) prepares the run's parameters for fitting; ``update`` sees
    every warm-up transition (the parameters after it, the state before and after it, its info and the
    eps it ran with) and returns the new parameters; ``finish`` returns the parameters the recorded
    steps use, fixed.  ``state_dict``/``load_state_dict`` checkpoint the adapter's own state.
    """

    def update(self, params: Any, before: SamplerState, state: SamplerState, info: StepInfo, eps: Tensor) -> Any: ...

    def finish(self, params: Any) -> Any: ...


class _Progress:
    """The progress bar of a run: phase, running acceptance, eps and the online diagnostics, refreshed once
    per 1% of the steps."""

    def __init__(self, total: int, enabled: bool | None, name: str, initial: int = 0) -> None:
        self.bar = progress_bar(total, enabled, name, initial=initial)
        self.every = max(1, total // 100)
        self.shown = initial  # the step last shown (fused blocks advance several steps at a time)
        self.compiled = False  # a fused block compiled since the last update

    def update(self, run: "Run") -> None:
        if self.bar is None:
            return
        i = run.i
        total = run.i if run.done else run.total  # warm-up or sampling ended early (warmup="auto", stop rules)
        if self.bar.total != total:
            self.bar.total = total
        if self.compiled:
            self.compiled = False
            self.bar.unpause()  # leave the compile time out of the rate and the time left
        elif not (i - self.shown >= self.every or run.done):
            return
        self.shown = i
        in_warmup = run.in_warmup or i == run.warm_end
        recorder = run.warm_rec if in_warmup else run.main_rec
        done = i if in_warmup else i - run.warm_end
        post = dict(phase="warmup" if in_warmup else "sampling",
                    acc=f"{float(recorder.accept_sum.mean()) / max(done, 1):.3f}", eps=f"{float(run.eps.mean()):.3g}")
        if run.monitor is not None and run.monitor.last is not None:
            post.update(rhat=f"{run.monitor.last[0]:.3f}", ess=f"{run.monitor.last[1]:.0f}")
        self.bar.set_postfix(**post, refresh=False)
        self.bar.update(i - self.bar.n)

    def compiling(self) -> None:
        """Say that the next block compiles (once per kind of block: tens of seconds on a CPU)."""
        if self.bar is not None:
            self.compiled = True
            self.bar.set_postfix_str("compiling a fused block (once)", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class WarmupSettler:
    """``warmup="auto"``: ends warm-up once eps and the acceptance have settled (checked every ``window`` steps).

    Settled means, over the last window: mean acceptance within ``tolerance`` of the target, and the
    dual-averaged step size (what the recorded steps would use) changed by less than 5% since the end
    of the previous window; at least two windows, at most the warm-up cap.
    """

    def __init__(self, target_accept: float, window: int = 50, tolerance: float = 0.05) -> None:
        self.target, self.window, self.tolerance = target_accept, window, tolerance
        self.accept_sum = 0.0
        self.previous: float | None = None

    def settled(self, i: int, signal: Tensor, adapter: StepSizeAdapter) -> bool:
        self.accept_sum = self.accept_sum + signal.mean()
        if (i + 1) % self.window:
            return False
        accept = float(self.accept_sum) / self.window  # one host read per window
        self.accept_sum = 0.0
        final = float(adapter.final().mean().log())
        moved = self.previous is None or abs(final - self.previous) > math.log(1.05)
        self.previous = final
        return (i + 1) >= 2 * self.window and not moved and abs(accept - self.target) < self.tolerance

    def state_dict(self) -> dict:
        return {"accept_sum": float(self.accept_sum), "previous": self.previous}

    def load_state_dict(self, d: dict) -> None:
        self.accept_sum, self.previous = d["accept_sum"], d["previous"]


class Run:
    """One run of a kernel: the loop's whole state, advanced one block of steps at a time, checkpointable.

    ``eps`` is the starting step size ``(chains,)``; the run's parameters (:attr:`params`) start as
    ``kernel.init_params(eps, z0)``.  ``levels`` is the annealing level of each warm-up step (None: no
    annealing); ``adapters`` tune other kernel parameters during warm-up (new for this run, from
    ``Sampler.warmup_adapters``); at warm-up step ``restart_adaptation_at`` dual averaging starts
    afresh from the current eps; ``until`` stops the recorded phase early
    (:class:`~latentmcmc.samplers.monitor.Until`).  :meth:`state_dict` and :meth:`load_state_dict` save and
    restore everything the remaining steps depend on, so that a resumed run continues exactly as an
    uninterrupted one.
    """

    def __init__(self, kernel: Kernel, target, z0: Tensor, eps: Tensor, shared_eps: bool, settings: RunSettings,
                 rng: torch.Generator, levels: Tensor | None, name: str, adapters=None,
                 restart_adaptation_at: int | None = None, until: Until | None = None, observers=None,
                 fused: FusedBlock | None = None, block: int = 0, periods: tuple[int, ...] = ()) -> None:
        s = self.settings = settings
        self.kernel, self.target, self.rng, self.levels, self.name = kernel, target, rng, levels, name
        self.shared_eps, self.restart_adaptation_at = shared_eps, restart_adaptation_at
        params = kernel.init_params(eps, z0)
        self.state = init_state(kernel, target, z0, params)
        self.evaluations = Evaluations(1, 0 if self.state.grad is None else 1)
        self.adapters = list(adapters or [])
        for adapter in self.adapters:
            params = adapter.start(params) if hasattr(adapter, "start") else params
        self.params = params
        self.adapter = StepSizeAdapter(eps, s.target_accept, shared=shared_eps) if s.adapt else None
        self.settler = WarmupSettler(s.target_accept) if s.auto_warmup and s.adapt else None
        self.log_weights = torch.zeros_like(self.state.energy) if levels is not None else None
        self.level_prev = (torch.zeros((), dtype=self.state.z.dtype, device=self.state.z.device)
                           if levels is not None else None)
        self.warm_rec = PhaseRecorder(self.state, s.warmup, s.thin, store=s.keep_warmup, store_eps=True,
                                      stream=s.stream)
        self.main_rec = PhaseRecorder(self.state, s.steps, s.thin, store=s.record == "full", store_eps=False,
                                      track_mh=not kernel.calibrated, stream=s.stream)
        self.monitor = Monitor(self.state, s.steps, until, s.monitor_every) if (until or s.monitor_every) else None
        self.observers = list(observers or [])  # called with the run every ``observer.every`` steps
        self.fused, self.block = (fused, block) if fused is not None and block >= 2 else (None, 0)
        self.fused_steps = 0
        # steps whose multiples a fused block must not cross (checkpoints, observers)
        self.periods = tuple(p for p in (*periods, *(o.every for o in self.observers)) if p)
        self.i = 0  # steps taken
        self.warm_end = s.warmup  # the first recorded step (earlier with warmup="auto")
        self.stopped_by: str | None = None
        self.settled = False  # warmup="auto": eps settled before the cap

    @property
    def eps(self) -> Tensor:
        """The step size ``(chains,)`` the next step runs with."""
        return self.params.eps

    @property
    def total(self) -> int:
        return self.warm_end + self.settings.steps

    @property
    def done(self) -> bool:
        return self.i >= self.total or self.stopped_by is not None

    @property
    def in_warmup(self) -> bool:
        return self.i < self.warm_end

    def advance(self) -> None:
        """The next block of steps: a fused block of ``block`` steps where one fits (:mod:`.fused`), else one step.

        Both run :func:`~.block.run_steps` (compiled, or not) and go through :meth:`_account`.
        """
        i, kernel = self.i, self.kernel
        in_warmup = i < self.warm_end
        if self.adapter is not None and i == self.restart_adaptation_at:  # annealed: dual averaging afresh at the target
            self.adapter = StepSizeAdapter(self.eps, self.settings.target_accept, shared=self.shared_eps)
        adapter = self.adapter if in_warmup else None
        freeze = not kernel.calibrated and not in_warmup
        k = self._fusable_steps()
        noises = [kernel.draw_noise(self.state, self.rng, self.params) for _ in range(max(k, 1))]
        before = self.state
        if k:
            recorder = self.warm_rec if in_warmup else self.main_rec
            keep_states = recorder.stores or (not in_warmup and self.monitor is not None)
            out = self.fused(self.state, self.params, noises, freeze=freeze, keep_states=keep_states, adapter=adapter,
                             log_weights=self.log_weights)
            self.fused_steps += k
        else:
            level = self.levels[i] if (self.levels is not None and in_warmup) else None
            out = run_steps(kernel, self.target, self.state, self.params, noises, freeze=freeze, keep_states=True,
                            adaptation=None if adapter is None else Adaptation.of(adapter),
                            levels=None if level is None else [level], level_prev=self.level_prev,
                            log_weights=self.log_weights)
        self._account(before, out, noises)

    def _fusable_steps(self) -> int:
        """Steps of the next fused block: ``block`` when that many steps fit before the next boundary, else 0.

        Not fused: annealing steps and the step after them (AIS weights), warm-up steps with kernel adapters
        (ChEES, flow fits), and uncalibrated kernels' steps that carry AIS weights.  A block never crosses
        the end of warm-up, a restart of the adaptation, a check of ``warmup="auto"`` or of the monitor, a
        checkpoint or an observer's step, so everything the driver does between steps sees the same states
        it would see running step by step.
        """
        if self.fused is None or not fusable(self.kernel):
            return 0
        i, in_warmup = self.i, self.i < self.warm_end
        if self.log_weights is not None and (in_warmup or self.level_prev is not None or not self.kernel.calibrated):
            return 0
        if in_warmup and self.adapters:
            return 0
        ends = [self.total]
        if in_warmup:
            ends.append(self.warm_end)
            if self.restart_adaptation_at is not None and i < self.restart_adaptation_at:
                ends.append(self.restart_adaptation_at)
            if self.settler is not None:
                ends.append((i // self.settler.window + 1) * self.settler.window)
        elif self.monitor is not None:
            ends.append(self.warm_end + max(self.monitor.next_check, self.monitor.count + 1))
        ends += [(i // p + 1) * p for p in self.periods]
        return self.block if min(ends) - i >= self.block else 0

    def _account(self, before: SamplerState, out: BlockOutput, noises: list) -> None:
        """The driver's bookkeeping after a block of ``k`` steps (one, or a fused block): the same for both.

        Costs, recording, the run's parameters (eps adapted inside the block; other warm-up adapters,
        which only run in one-step blocks), the end of warm-up (``warmup="auto"``), AIS weights, the
        monitor and observers.  A block ends where a boundary falls, so only its last step can end
        warm-up, reach a monitor check or an observer.
        """
        kernel, i0, k = self.kernel, self.i, out.steps
        in_warmup = i0 < self.warm_end
        self.state = out.state
        for noise in noises:
            self.evaluations = self.evaluations + evaluations_of(kernel, noise)
        if self.log_weights is not None:
            self.log_weights, self.level_prev = out.log_weights, out.level_prev
        if in_warmup:
            self.warm_rec.record_block(i0, out)
            params = out.params
            for other in self.adapters:  # one-step blocks only (see _fusable_steps)
                params = other.update(params, before, out.state, out.info(0), out.eps[0])
            end = i0 + k == self.warm_end
            if self.adapter is not None:
                self.adapter.state = out.adaptation
                if self.settler is not None:
                    signals = adaptation_signal(kernel, out)  # (k, chains)
                    for j in range(k):  # one host read per window, at the block's last step
                        if self.settler.settled(i0 + j, signals[j], self.adapter):
                            end, self.warm_end, self.settled = True, i0 + j + 1, True
                if end:
                    params = params._replace(eps=self.adapter.final())
            if end:
                for other in self.adapters:
                    params = other.finish(params)
            self.params = params
        else:
            self.main_rec.record_block(i0 - self.warm_end, out)
            if self.monitor is not None:
                self.monitor.record_block(out)
                if self.monitor.due() and self.monitor.check():
                    self.stopped_by = self.monitor.stopped_by
        self.i += k
        for observer in self.observers:
            if self.i % observer.every == 0:
                observer(self)

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the remaining steps depend on (tensors and plain data: ``torch.load(weights_only=True)`` reads it)."""
        self.warm_rec.flush()
        self.main_rec.flush()
        return _copied({
            "i": self.i, "warm_end": self.warm_end, "stopped_by": self.stopped_by, "settled": self.settled,
            "fused_steps": self.fused_steps,
            "state": dict(self.state._asdict()),
            "params": dict(self.params._asdict()), "rng": self.rng.get_state(),
            "evaluations": tuple(self.evaluations),
            "adapter": None if self.adapter is None else self.adapter.state_dict(),
            "settler": None if self.settler is None else self.settler.state_dict(),
            "adapters": [a.state_dict() for a in self.adapters],
            "log_weights": self.log_weights, "level_prev": self.level_prev,
            "warm_rec": self.warm_rec.state_dict(), "main_rec": self.main_rec.state_dict(),
            "monitor": None if self.monitor is None else self.monitor.state_dict(),
            "observers": [o.state_dict() if hasattr(o, "state_dict") else None for o in self.observers],
        })

    def load_state_dict(self, d: dict[str, Any]) -> None:
        device = self.state.z.device
        move = lambda v: v.to(device) if isinstance(v, Tensor) else (  # noqa: E731
            {k: move(x) for k, x in v.items()} if isinstance(v, dict) else v)
        self.i, self.warm_end, self.stopped_by = int(d["i"]), int(d["warm_end"]), d["stopped_by"]
        self.settled = bool(d.get("settled", False))
        self.fused_steps = int(d.get("fused_steps", 0))
        self.state = SamplerState(**{k: move(v) for k, v in d["state"].items()})
        self.params = type(self.params)(**{k: move(v) for k, v in d["params"].items()})
        self.rng.set_state(d["rng"])
        self.evaluations = Evaluations(*d["evaluations"])
        if d["adapter"] is not None:
            self.adapter = StepSizeAdapter(self.eps, self.settings.target_accept, shared=self.shared_eps)
            self.adapter.load_state_dict(d["adapter"])
        if self.settler is not None and d["settler"] is not None:
            self.settler.load_state_dict(d["settler"])
        for adapter, saved in zip(self.adapters, d["adapters"]):
            if hasattr(adapter, "start"):
                self.params = adapter.start(self.params)
            adapter.load_state_dict(saved)
            if self.i >= self.warm_end > 0:
                self.params = adapter.finish(self.params)  # warm-up was over: the adapted parameter is fixed again
        self.log_weights = None if d["log_weights"] is None else d["log_weights"].to(device)
        self.level_prev = None if d["level_prev"] is None else d["level_prev"].to(device)
        self.warm_rec.load_state_dict(d["warm_rec"])
        self.main_rec.load_state_dict(d["main_rec"])
        if self.monitor is not None and d["monitor"] is not None:
            self.monitor.load_state_dict(d["monitor"])
        for observer, saved in zip(self.observers, d.get("observers", [])):
            if saved is not None and hasattr(observer, "load_state_dict"):
                observer.load_state_dict(saved)

    # -------------------------------------------------------------- result
    def chains(self, interrupted: bool = False) -> Chains:
        self.warm_rec.flush()
        self.main_rec.flush()
        s = self.settings
        chains = _chains(self.state, self.eps, self.warm_rec, self.main_rec, s, self.rng.initial_seed(),
                         self.log_weights, self.kernel.calibrated, self.name, self.warm_end)
        chains.evaluations = self.evaluations
        report = getattr(self.kernel, "report", None)
        if report is not None:  # what the run's final parameters say (HMC: its ChEES trajectory length)
            chains.extra.update(report(self.params))
        short = self.main_rec.count < s.steps
        if short:
            chains = _truncate(chains, self.main_rec.count // s.thin)
            chains.steps = self.main_rec.count
        if self.warm_end < s.warmup:
            chains = _truncate_warmup(chains, self.warm_rec.count // s.thin)
        if interrupted:
            chains.extra["interrupted"] = True
        if self.stopped_by is not None:
            chains.extra["stopped_by"] = self.stopped_by
        elif self.monitor is not None and self.monitor.until is not None and not interrupted:
            chains.extra["stopped_by"] = f"max steps ({s.steps}) before {self.monitor.until.describe()}"
        if self.monitor is not None and self.monitor.last is not None:
            chains.extra["online_rhat"], chains.extra["online_ess"] = self.monitor.last
            chains.extra["online_history"] = list(self.monitor.history)  # (recorded steps, R-hat, ESS) per check
        if s.auto_warmup:
            chains.extra["warmup_settled"] = self.settled
        chains.extra["fused_steps"] = self.fused_steps  # steps run inside compiled blocks (.fused)
        if self.fused_steps:
            chains.extra["fused_block"] = self.block  # steps per compiled call
        return chains


def sample(kernel: Kernel, target, z0: Tensor, eps: Tensor, shared_eps: bool, settings: RunSettings,
           rng: torch.Generator, levels: Tensor | None, name: str, adapters=None,
           restart_adaptation_at: int | None = None, until: Until | None = None,
           checkpoint: Callable[[Run], None] | None = None, checkpoint_every: int | None = None,
           resume_from: dict | None = None, observers=None, fused: FusedBlock | None = None) -> Chains:
    """Run ``settings.warmup`` then ``settings.steps`` steps of ``kernel`` from ``z0``; return what was recorded.

    See :class:`Run` for the arguments and :meth:`~latentmcmc.samplers.Sampler.run` for the rest.
    ``checkpoint(run)`` is called every ``checkpoint_every`` steps (warm-up included) with the run, whose
    :meth:`Run.state_dict` it saves; ``resume_from`` is such a state to continue from.  ``fused`` runs
    blocks of ``settings.fuse`` steps as one compiled call where they fit (:mod:`.fused`); with
    ``settings.fuse == "auto"`` only when :func:`~.fused.auto_fuses` says the run is big enough.
    """
    block = settings.fuse
    if block == "auto":
        chains, total = z0.shape[0], settings.warmup + settings.steps
        flops = step_flops(target, z0) if fusable(kernel) and total >= AUTO_MIN_STEPS else 0.0
        block = DEFAULT_BLOCK if fusable(kernel) and auto_fuses(chains, total, z0.device, flops) else 0
    run = Run(kernel, target, z0, eps, shared_eps, settings, rng, levels, name, adapters, restart_adaptation_at,
              until, observers, fused if block else None, block or 0,
              (checkpoint_every,) if checkpoint is not None and checkpoint_every else ())
    if resume_from is not None:
        run.load_state_dict(resume_from)
    progress = _Progress(run.total, settings.progress, name, initial=run.i)
    if run.fused is not None:
        run.fused.on_compile = progress.compiling
    interrupted = False
    try:
        while not run.done:
            run.advance()
            progress.update(run)
            if checkpoint is not None and checkpoint_every and run.i % checkpoint_every == 0 and not run.done:
                checkpoint(run)
    except KeyboardInterrupt:
        if run.in_warmup or run.i <= run.warm_end:
            raise
        interrupted = True
        warnings.warn(f"run interrupted after {run.main_rec.count} of {settings.steps} recorded steps; returning "
                      "those draws", RuntimeWarning, stacklevel=3)
    finally:
        progress.close()
    chains = run.chains(interrupted)
    _warn_divergences(chains)
    return chains


def _copied(tree: Any) -> Any:
    """``tree`` with every tensor copied: a saved state must not change as the run goes on (running sums, an
    optimizer's moments and a flow's parameters are updated in place)."""
    return torch.utils._pytree.tree_map(lambda t: t.detach().clone() if isinstance(t, Tensor) else t, tree)


def _chains(state: SamplerState, eps: Tensor, warm_rec: PhaseRecorder, main_rec: PhaseRecorder, s: RunSettings,
            seed: int, log_weights: Tensor | None, calibrated: bool, name: str, warmup: int) -> Chains:
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
        warmup=warmup,
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


def _truncate_warmup(chains: Chains, n: int) -> Chains:
    for name in ("warmup_draws", "warmup_energy", "warmup_accept_prob", "warmup_eps", "warmup_diverging"):
        value = getattr(chains, name)
        if value is not None:
            setattr(chains, name, value[:, :n])
    return chains


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
