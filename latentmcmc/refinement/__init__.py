"""Refine a generator's samples: run a latent sampler and measure the run and the samples it gives.

This is what ``latentmcmc refine`` and ``latentmcmc demo`` do, as one Python call::

    result = refine(generator, critic, (128,), RefineOptions(num_chains=1000, sampler="mala", steps=500))
    result = refine(generator, critic, (128,), num_chains=1000, eps=0.01)   # the same, as keywords
    result.after          # G(z) at the chains' final states
    result.metrics        # acceptance, ESS, R-hat, divergences, quality before/after

Modules: :mod:`.options` (the typed options), :mod:`.blocks` (seeds, starting points and runs of
blocks of chains), :mod:`.distributed` (blocks over torchrun ranks), :mod:`.summary` (assembling the
result and its numbers).
"""

from __future__ import annotations

import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import process_group
from ..conditions import per_chain
from ..datafiles import data_fingerprint
from ..energy import LatentEnergy
from ..priors import prior_name
from ..samplers.registry import SAMPLERS, SamplerOptions
from ..samplers.registry import make_sampler as _make_sampler
from ..samplers.resume import check_fingerprint, load_state, save_state
from ..signals import interrupts_deferred
from .blocks import (
    BlockRun,
    block_ranges,
    block_seed,
    prior_draws,
    run_blocks,
    stream_seeds,
)
from .options import RefineOptions
from .summary import Refinement, assemble, run_metrics

__all__ = ["SAMPLERS", "RefineOptions", "state_path", "Refinement", "BlockRun", "refine", "run_blocks", "assemble", "block_ranges",
           "block_seed", "stream_seeds", "prior_draws", "make_sampler", "run_metrics"]


def make_sampler(name: str, energy, eps: float = 0.01, schedule: str = "linear", compile: bool | str = False):
    """Deprecated (latentmcmc 0.1): use :func:`latentmcmc.samplers.make_sampler` with :class:`SamplerOptions`."""
    warnings.warn("latentmcmc.refinement.make_sampler is deprecated; use latentmcmc.samplers.make_sampler(name, "
                  "energy, SamplerOptions(...))", DeprecationWarning, stacklevel=2)
    return _make_sampler(name, energy, SamplerOptions(eps=eps, schedule=schedule, compile=compile))


KILL_AFTER_CHECKPOINT = "_LATENTMCMC_KILL_AFTER_CHECKPOINT"
"""Testing only: SIGKILL this process right after writing that many run-state checkpoints (the resume tests)."""


def state_path(checkpoint: str | os.PathLike, rank: int, world: int) -> Path:
    """The run-state file of ``rank`` (``checkpoint`` itself in a one-process run)."""
    return Path(checkpoint) if world == 1 else Path(f"{checkpoint}.rank{rank}")


def _writer(path: Path, mark: dict) -> Callable[[dict], None]:
    limit = int(os.environ.get(KILL_AFTER_CHECKPOINT, "0") or 0)
    written = [0]

    def write(blocks_state: dict) -> None:
        save_state(path, {"fingerprint": mark, "blocks": blocks_state})
        written[0] += 1
        if limit and written[0] >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return write


def refine(generator: nn.Module, critic: nn.Module, latent_shape: tuple[int, ...], options: RefineOptions | None = None,
           *, dataset=None, distributed: bool | None = None, checkpoint: str | os.PathLike | None = None,
           checkpoint_every: int | None = None, resume: bool = False, source: str | None = None,
           quality=None, on_resume: Callable[[Path], None] | None = None, condition=None,
           **overrides: Any) -> Refinement | None:
    r"""Sample ``exp(-E)``, ``E(z) = beta s U(G(z)) + 0.5 |z|^2``, from prior draws; measure it.

    ``options`` (:class:`RefineOptions`) say what to run; keywords override its fields (the
    :class:`~latentmcmc.samplers.SamplerOptions` fields ``eps``, ``schedule``, ``compile`` may be given
    flat): ``refine(G, U, (2,), num_chains=2000, eps=0.02)``.  ``dataset`` (a built-in
    :class:`~latentmcmc.training.Dataset`) adds the data set's quality metrics before and after
    refinement.  The chains start from ``z0 ~ N(0, I)`` drawn from ``seed`` on the CPU, so a seed gives
    the same starting points on every device; sampling uses ``seed`` too.

    ``block_size``: run the chains in blocks of this many, one after the other.  Block ``b`` draws its
    starting points and noise from :func:`stream_seeds` ``(seed, b)`` and adapts its own step size, so
    a blocked run gives the same draws however its blocks are scheduled.  ``record_blocks=k`` records
    every draw of the first ``k`` blocks only (they carry ESS and R-hat) and keeps just the final
    state of the others, so memory beyond one block's working set is the chains' states.

    ``distributed`` (default: when a ``torch.distributed`` process group of more than one process is
    initialised, e.g. under torchrun): every rank calls ``refine``; the blocks (default size
    ``ceil(num_chains / world size)``) are dealt over the ranks and gathered on rank 0, which returns
    the result; the other ranks return ``None``.  See :mod:`latentmcmc.refinement.distributed`.

    ``compile`` (True or a ``torch.compile`` mode) compiles the energy; see
    :func:`~latentmcmc.energy.compile_target`.  ``stream=k`` keeps recorded draws in (pinned) host
    memory, copied from the device every ``k`` draws (see :meth:`~latentmcmc.samplers.Sampler.run`).

    ``condition`` (class-conditional models): one row per chain (class ids or any tensor), passed as
    ``G(z, c)`` and ``D(x, c)``; blocks and torchrun ranks take their chains' rows, and the result keeps
    them (``result.condition``).  ``options.prior`` names the latent prior (:mod:`latentmcmc.priors`); the
    latents of the result are in its space.

    ``checkpoint`` (a file) with ``checkpoint_every=N``: every ``N`` steps (warm-up included) and after
    every block, the complete state (finished blocks, the current block's sampler state, every random
    generator) is written there atomically (under torchrun one file per rank, ``.rankR``).  The same
    call with ``resume=True`` continues from it and returns exactly what an uninterrupted call would;
    a state written with other options, another model (``source`` names it) or another number of
    processes is refused, naming the difference; ``on_resume(path)`` is called once a state is accepted.
    """
    options = (options or RefineOptions()).replace(**overrides) if overrides else (options or RefineOptions())
    ignored = options.ignored_sampler_options()
    if ignored:
        warnings.warn(f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to sampler "
                      f"{options.sampler}; ignored", UserWarning, stacklevel=2)
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    if (checkpoint_every is not None or resume) and checkpoint is None:
        raise ValueError("checkpoint_every= and resume= need checkpoint= (the run-state file)")
    device = options.resolved_device(generator)
    if condition is not None and options.resample:
        raise ValueError("resample draws chains by their AIS weights across all of them, which would change how many "
                         "samples each condition gets: it is not for conditional runs")
    energy = LatentEnergy(generator, critic, beta=options.beta, prior=options.prior, latent_shape=tuple(latent_shape),
                          critic_sign=options.critic_sign, critic_output=options.critic_output,
                          condition=per_chain(condition, options.num_chains, device))
    if energy.condition is not None:  # every distinct condition through both networks: a clear error now
        from ..conditions import check_conditional

        check_conditional(generator, critic, tuple(latent_shape), energy.condition, device)
    view = data_view(energy, tuple(latent_shape), options.data_shape, device)
    tracker = None
    if options.track_every:
        from .tracking import QualityTracker

        measure = quality if quality is not None else (dataset.quality if dataset is not None else None)
        if measure is None:
            raise ValueError("track_every needs quality metrics: a built-in data set or quality= (your features)")
        c = energy.condition
        tracker = QualityTracker(measure, lambda u: energy.generate(u, None if c is None else c[:u.shape[0]]), view,
                                 options.track_every, options.track_chains, options.track_metric,
                                 options.keep == "best", energy.latent_prior)
    extra: dict[str, Any] = {"beta": options.beta, "prior": prior_name(options.prior), "critic_output": energy.critic_output,
                             "critic_reading": energy.critic_reading}
    if options.track_every:
        extra["kept"] = options.keep
    t0 = time.perf_counter()
    if distributed is None:
        distributed = process_group.active()
    rank, world = process_group.rank_and_world() if distributed else (0, 1)
    saving: dict[str, Any] = {}
    if checkpoint is not None:
        path = state_path(checkpoint, rank, world)
        mark = {"options": options.fingerprint(), "latent_shape": list(latent_shape), "world_size": world,
                "condition": None if energy.condition is None else data_fingerprint(energy.condition),
                "source": source}
        if resume:
            state = load_state(path)
            check_fingerprint(state["fingerprint"], mark, path)
            saving["resume"] = state["blocks"]
            if on_resume is not None:  # the state is accepted: say so (the CLI prints where it resumes)
                on_resume(Path(path))
        if checkpoint_every is not None:
            saving.update(checkpoint=_writer(path, mark), checkpoint_every=checkpoint_every)
    if tracker is not None:
        saving["tracker"] = tracker
    if distributed:
        from .distributed import run_sharded

        gathered = run_sharded(energy, tuple(latent_shape), options, device, **saving)
        if gathered is None:
            return None
        (blocks, interrupted), extra["world_size"] = gathered, process_group.rank_and_world()[1]
    else:
        blocks, interrupted = run_blocks(energy, tuple(latent_shape), options, None, device, **saving)
    extra["seconds"] = time.perf_counter() - t0
    args = (blocks, generator, interrupted, dataset, extra, options.superchain_size if options.superchains else None,
            quality, view, options.resample, options.seed, tracker)
    try:
        return assemble(*args, energy=energy)
    except KeyboardInterrupt:  # the sampling is done: keep its draws, without the diagnostics that were cut short
        with interrupts_deferred():
            result = assemble(*args, diagnostics=False, energy=energy)
        result.metrics["interrupted"] = True
        return result


@torch.no_grad()
def data_view(energy: LatentEnergy, latent_shape: tuple[int, ...], data_shape: tuple[int, ...] | None,
              device: torch.device):
    """``x -> x`` viewed as ``(n, *data_shape)``, or None; a ValueError when the sizes do not match."""
    if data_shape is None:
        return None
    c = energy.condition
    x = energy.generate(torch.zeros(1, *latent_shape, device=device), None if c is None else c[:1])
    size = x[0].numel()
    if size != math.prod(data_shape):
        raise ValueError(f"data_shape {tuple(data_shape)} holds {math.prod(data_shape)} values but the generator "
                         f"outputs {size} per sample (shape {tuple(x.shape[1:])})")
    return lambda t: t.reshape(t.shape[0], *data_shape)
