"""A sampler: a kernel built from declared options, on a target; ``run`` hands them to the driver."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from ..chains import Chains
from ..deprecation import resolve_rng
from ..energy import EnergyFn, Target, as_target, compile_target
from .driver import (
    RunSettings,
    check_int,
    check_start,
    init_state,
    make_rng,
    one_step,
    sample,
)
from .fused import FusedBlock
from .kernel import Kernel, SamplerState, StepInfo
from .legacy import as_kernel
from .monitor import Until
from .options import COMPILE, EPS, Option
from .resume import check_fingerprint, fingerprint, load_state, save_state

__all__ = ["Sampler"]


class Sampler:
    """A transition kernel (``make_kernel``) on a target, built from the options it declares; ``run`` samples.

    ``options`` lists the sampler's constructor options (:class:`~.options.Option` declarations, next
    to the kernel that uses them); the constructor takes the energy and then those options, validates
    each with its declaration and keeps them as plain attributes (``sampler.eps``,
    ``sampler.leapfrog_steps``) and in :attr:`config`.  Nothing about a sampler changes after
    construction: what warm-up tunes (eps, HMC's trajectory length, a flow's parameters) lives in each
    run's own parameters (:mod:`.driver`), so the same sampler and seed always give the same draws.

    Subclasses name their kernel in :meth:`make_kernel`; annealed samplers also give the levels of
    their warm-up steps (:meth:`annealing_levels`).  Everything else (warm-up, adaptation, recording,
    progress, interrupts) is the driver's (:mod:`latentmcmc.samplers.driver`).

    ``compile`` (False, True or a ``torch.compile`` mode such as ``"reduce-overhead"`` for CUDA graphs)
    compiles the energy's forward and backward pass; see :func:`~latentmcmc.energy.compile_target` for
    what stays equal to the eager run.  ``run(fuse=...)`` compiles whole blocks of steps instead
    (:mod:`latentmcmc.samplers.fused`), in ``compile``'s mode when one is named.
    """

    options: tuple[Option, ...] = (EPS, COMPILE)
    default_target_accept: float = 0.574
    anneals: bool = False  # moves from the prior to the target during warm-up (AIS weights)
    global_moves: bool = False  # jumps between modes with independent proposals (i-SIR and its relatives)
    needs_warmup: str | None = None  # why the sampler needs warmup >= 1 (it anneals, or fits a proposal), or None

    has_step_size: bool = True  # derived from options: False without EPS (i-SIR: eps is NaN and never adapted)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _signature(cls.options)
        cls.has_step_size = EPS in cls.options

    def __init__(self, energy: EnergyFn | Target, *args: Any, **kwargs: Any) -> None:
        config = _bind(type(self), args, kwargs)
        checked = {option.name: option.validate(config[option.name]) for option in self.options}
        self.check_options(checked)
        self.config: dict[str, Any] = config  # the options as given (the sampler's part of a run's fingerprint)
        for name, value in checked.items():
            setattr(self, name, value)
        if not self.has_step_size:
            self.eps = torch.tensor(float("nan"))
        target = as_target(energy)
        self.raw_target = target
        compile = checked.get("compile", False)
        self.compile_mode = "default" if compile in (False, True) else compile
        self.target = compile_target(target, compile) if compile is not False else target
        self.kernel: Kernel = as_kernel(self.make_kernel())
        self._fused: FusedBlock | None = None

    def check_options(self, options: dict[str, Any]) -> None:
        """Checks that involve several options (each option alone was checked by its declaration)."""

    def make_kernel(self) -> Kernel:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(option.name for option in cls.options)

    @property
    def metropolis(self) -> bool:
        """Whether the kernel is Metropolis-Hastings corrected (leaves ``exp(-E)`` exactly invariant)."""
        return self.kernel.calibrated

    @classmethod
    def check_warmup(cls, warmup: int | str, name: str | None = None) -> None:
        """A ValueError when ``warmup`` (steps or ``"auto"``) cannot serve this sampler (called ``name``)."""
        name = name or cls.__name__
        if warmup == "auto":
            if not cls.has_step_size:
                raise ValueError(f"warmup='auto' ends warm-up when eps settles; {name} has no eps")
            if cls.anneals:
                raise ValueError(f"warmup='auto' is not for {name}: it anneals over its warm-up, whose length must be "
                                 "known in advance; give warmup as a number of steps")
        elif cls.needs_warmup and isinstance(warmup, int) and warmup < 1:
            raise ValueError(f"{name} {cls.needs_warmup}: warmup must be >= 1")

    # ------------------------------------------------------------------ step size
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
        return EPS.validate(eps).to(device=state.z.device, dtype=state.z.dtype).expand(state.z.shape[0])

    # ------------------------------------------------------------------ warm-up hooks
    def annealing_levels(self, warmup: int, z: Tensor, adapt: bool = False) -> Tensor | None:
        """Annealing level of each warm-up step, or None when the sampler does not anneal."""
        return None

    def adaptation_restart(self, warmup: int, adapt: bool) -> int | None:
        """The warm-up step at which dual averaging starts afresh (annealed samplers: where the target stops moving)."""
        return None

    def warmup_adapters(self, warmup: int = 0) -> list:
        """New adapters of kernel parameters other than eps for one run's warm-up (see ``driver.WarmupAdapter``)."""
        return []

    # ------------------------------------------------------------------ one step
    def init(self, z0: Tensor) -> SamplerState:
        """Evaluate energy and gradient at ``z0`` ``(chains, *latent_shape)`` and check the target."""
        z0 = check_start(z0)
        return init_state(self.kernel, self.target, z0, self.kernel.init_params(self._eps_vector(z0), z0))

    def step(self, state: SamplerState, rng: torch.Generator | None = None, eps: Tensor | float | None = None,
             level: Tensor | None = None, in_warmup: bool = False, *,
             generator: torch.Generator | None = None) -> tuple[SamplerState, StepInfo]:
        """One transition of every chain: noise from ``rng``, then the kernel's step (the driver's one step path).

        ``level`` runs the step on the tempered target at that level (annealing); outside warm-up
        (``in_warmup=False``) an uncalibrated kernel's divergent chains are frozen, as in :meth:`run`.
        """
        rng = resolve_rng(rng, generator)
        params = self.kernel.init_params(self._eps_for(state, eps), state.z)
        return one_step(self.kernel, self.target, state, params, rng, level, freeze=not in_warmup)

    # ------------------------------------------------------------------ run
    def run(
        self,
        z0: Tensor,
        steps: int = 1000,
        warmup: int | Literal["auto"] = 0,
        adapt: bool | None = None,
        target_accept: float | None = None,
        thin: int = 1,
        seed: int | None = None,
        progress: bool | None = None,
        record: str = "full",
        keep_warmup: bool = False,
        rng: torch.Generator | None = None,
        stream: int | None = None,
        *,
        generator: torch.Generator | None = None,
        until: Until | None = None,
        max_warmup: int = 1000,
        monitor_every: int = 0,
        checkpoint: str | os.PathLike | Callable[[dict], None] | None = None,
        checkpoint_every: int | None = None,
        resume: bool | dict = False,
        observers: list | None = None,
        fuse: bool | int | str = "auto",
    ) -> Chains:
        """Run ``warmup`` steps (adapting eps by dual averaging when ``adapt``), then ``steps`` recorded steps.

        Args:
            z0: starting states ``(chains, *latent_shape)``; device and dtype of the run follow it.
            steps: recorded steps after warm-up (>= 1); with ``until``, the most recorded steps.
            warmup: steps before recording (annealed samplers anneal during them), or ``"auto"``:
                adapt until eps and the acceptance settle (checked every 50 steps: acceptance within
                0.05 of the target and the averaged eps moved by under 5% over the last window), at
                most ``max_warmup`` steps.
            adapt: adapt eps during warm-up; default True when ``warmup > 0``.  A scalar eps is
                adapted as one shared value, a ``(chains,)`` eps per chain.
            target_accept: acceptance probability adaptation aims at; default
                ``default_target_accept`` of the sampler (MALA 0.574, optimal for MALA by Roberts &
                Rosenthal 1998; unadjusted Langevin 0.9 of the acceptance MALA would have, which bounds
                its discretisation bias).
            thin: keep every ``thin``-th state.
            seed: seed of the run's random-number generator (same seed and device, same draws).
            progress: True: a progress bar; False: nothing; None (default): a bar when stderr is a terminal,
                else a line every tenth of the run (a job's log shows it is alive).
            record: what the run keeps (:data:`~latentmcmc.samplers.recording.RECORD_CHOICES`):
                ``"full"`` the (thinned) draws, ``"last"`` only the final state.
            keep_warmup: also keep the (thinned) warm-up draws in ``chains.warmup_*``.
            rng: a ``torch.Generator`` on ``z0``'s device to use instead of ``seed``
                (``generator=`` is its deprecated name).
            stream: keep the recorded draws in host memory (pinned for CUDA chains) instead of on
                the chains' device, copied over asynchronously every ``stream`` kept draws, so a
                long GPU run is bounded by host memory; the draws are the same.
            until: stop rules (:class:`~latentmcmc.samplers.monitor.Until`): end the recorded phase
                once R-hat and/or ESS of the energy and a few coordinates reach their thresholds;
                ``chains.extra["stopped_by"]`` says which rule ended the run, ``chains.extra["online_history"]``
                lists ``(recorded steps, max R-hat, min ESS)`` at every check; ``until.check_every`` sets
                the checks.
            monitor_every: without ``until``, compute R-hat and ESS online every this many recorded steps
                (shown in the progress bar) without stopping on them; with ``until`` it is not used.
            checkpoint, checkpoint_every: write the run's complete state to ``checkpoint`` every
                ``checkpoint_every`` steps (warm-up included), atomically.  ``resume=True`` continues
                from that file (the same call with the same arguments) and gives exactly the draws of
                an uninterrupted run; a file written by other arguments or another sampler's options is
                refused, naming the difference.  (``checkpoint`` may also be a function that stores the
                state payload itself, and ``resume`` that payload: what :func:`~latentmcmc.refinement.refine`
                does.)
            observers: objects called with the driver's run every ``observer.every`` steps (warm-up
                included), e.g. to measure sample quality along the chain; their ``state_dict`` (if
                any) is checkpointed with the run.
            fuse: run blocks of steps as one ``torch.compile``-d call (:mod:`latentmcmc.samplers.fused`):
                an int ``K >= 2`` (steps per block), True (``K = 10``), ``"auto"`` (the default: fused
                only when the run has at least 400 steps and 20 million chain-steps or 5e13 model
                FLOPs, on CUDA at least 20,000 steps, so that compiling pays off; decided from those
                counts, never from timings, so the same call always takes the same path) or False.
                Fused and eager steps go through the same step function and bookkeeping; with a fixed
                eps their states equal the eager run's to rounding, and during warm-up eps is adapted
                inside the block after every step.  Annealing steps, warm-up steps of kernels with
                other adapters (ChEES, flows) and gradient-free kernels run one step at a time.
                Compiling costs seconds once per process, model and block shape.
        """
        rng = resolve_rng(rng, generator)
        self.check_warmup(warmup)
        if not self.has_step_size:
            if adapt:
                raise ValueError(f"{type(self).__name__} has no step size to adapt: leave adapt unset or False")
            adapt = False
        settings = RunSettings.checked(steps, warmup, adapt,
                                       self.default_target_accept if target_accept is None else target_accept,
                                       thin, record, keep_warmup, stream, progress, max_warmup, monitor_every, fuse)
        if until is not None and not isinstance(until, Until):
            raise ValueError(f"until must be a latentmcmc.samplers.Until, got {type(until).__name__}")
        if (checkpoint is None) != (checkpoint_every is None) and not (resume and checkpoint is not None):
            raise ValueError("checkpoint= and checkpoint_every= go together")
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every, 1)
        z0 = check_start(z0)
        if rng is None:
            rng = make_rng(seed, z0.device)
        elif rng.device.type != z0.device.type:
            raise ValueError(f"rng is on {rng.device} but z0 is on {z0.device}")
        levels = self.annealing_levels(settings.warmup, z0, settings.adapt)
        eps = self._eps_vector(z0)
        mark = fingerprint(self, settings, z0, eps, rng.initial_seed())
        saved = None
        if isinstance(resume, dict):
            check_fingerprint(resume["fingerprint"], mark, "the saved state")
            saved = resume["run"]
        elif resume:
            if checkpoint is None or callable(checkpoint):
                raise ValueError("resume=True needs checkpoint= (the file a previous run wrote)")
            state = load_state(checkpoint)
            check_fingerprint(state["fingerprint"], mark, checkpoint)
            saved = state["run"]
        write = None
        if checkpoint is not None and checkpoint_every:
            if callable(checkpoint):
                write = lambda run: checkpoint({"fingerprint": mark, "run": run.state_dict()})  # noqa: E731
            else:
                write = lambda run: save_state(checkpoint, {"fingerprint": mark, "run": run.state_dict()})  # noqa: E731
        return sample(self.kernel, self.target, z0, eps, self.shared_eps, settings, rng, levels, type(self).__name__,
                      adapters=self.warmup_adapters(settings.warmup),
                      restart_adaptation_at=self.adaptation_restart(settings.warmup, settings.adapt), until=until,
                      checkpoint=write, checkpoint_every=checkpoint_every, resume_from=saved, observers=observers,
                      fused=self.fused_block() if settings.fuse is not None else None)

    def fused_block(self) -> FusedBlock:
        """The compiled blocks of this sampler's kernel (a cache of compiled code: built once, reused by every run)."""
        if self._fused is None:
            self._fused = FusedBlock(self.kernel, self.raw_target, self.compile_mode)
        return self._fused


def _signature(options: tuple[Option, ...]) -> inspect.Signature:
    """``(energy, <option>=<default>, ...)``: a sampler's constructor signature, from its declared options."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("energy", kind)]
                             + [inspect.Parameter(o.name, kind, default=o.default) for o in options])


def _bind(cls: type, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The constructor's arguments by option name, defaults filled in (a TypeError as Python would give)."""
    names = [o.name for o in cls.options]
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes the energy and at most {len(names)} options positionally "
                        f"({', '.join(names)}), got {len(args) + 1} arguments")
    values = dict(zip(names, args))
    for name, value in kwargs.items():
        if name not in names:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}; its options: "
                            f"{', '.join(names)}")
        if name in values:
            raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
        values[name] = value
    return {o.name: values.get(o.name, o.default) for o in cls.options}


Sampler.__signature__ = _signature(Sampler.options)
