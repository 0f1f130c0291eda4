"""A refinement's result: blocks assembled into final states, samples and the run's numbers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..chains import Chains
from ..conditions import class_accuracy, class_ids
from .blocks import BlockRun

__all__ = ["Refinement", "run_metrics", "assemble", "generate_in_batches"]


@dataclass
class Refinement:
    """A refinement run: the recorded chains, the starting and final latents and samples, and its metrics.

    ``z`` is every chain's final state (or its state at the best tracked step with ``keep="best"``,
    or an importance resample with ``resample``); ``weights`` are an annealed sampler's normalised AIS
    weights of the chains (of ``z`` before any resampling); ``tracking`` the rows of the quality
    measured along the chain.
    """

    chains: Chains  # the recorded run (the blocks that recorded their draws)
    z0: Tensor  # (num_chains, *latent_shape) prior draws every chain started from
    z: Tensor  # (num_chains, *latent_shape) every chain's final state
    before: Tensor  # G(z0), viewed as the data's shape
    after: Tensor  # G(z), likewise
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: Tensor | None = None  # data the generator was trained on, for plots (when known)
    weights: Tensor | None = None  # (num_chains,) AIS weights, summing to 1 (annealed samplers)
    tracking: list[dict[str, Any]] | None = None
    value_range: tuple[float, float] | None = None  # the generator's pixel range, for image grids (None: read off)
    condition: Tensor | None = None  # (num_chains, ...) each chain's condition (class-conditional models)


def run_metrics(chains: Chains, superchain_size: int | None = None, diagnostics: bool = True) -> dict[str, Any]:
    """Acceptance, step size, divergences, ESS (bulk/tail, energy and worst coordinate) and R-hat of a run.

    With ``superchain_size`` (consecutive chains sharing a start), also nested R-hat.  ``diagnostics=False``
    leaves out ESS, R-hat and the AIS estimate (what takes time), as after a Ctrl-C.
    """
    from ..diagnostics import ess_rhat, rhat_nested

    m: dict[str, Any] = {
        "sampler": chains.sampler,
        "chains": chains.num_chains,
        "warmup": chains.warmup,
        "draws": chains.num_draws,
        "steps": chains.steps,  # recorded steps after warm-up (draws x thin, or more with record="last")
        "thin": chains.thin,
        "eps_mean": float(chains.eps.double().mean()),  # float64: the same value whatever eps's strides
        "acceptance": float(chains.acceptance_rate.mean()),
        "divergences": int(chains.divergences.sum()),
        "frozen_chains": int(chains.frozen.sum()),
    }
    if chains.num_draws >= 2:
        m["stuck_chains"] = int(chains.stuck().sum())
    if chains.mh_accept_rate is not None:
        m["mh_accept_rate"] = float(chains.mh_accept_rate.mean())
    if chains.jump_rate is not None:
        m["jump_rate"] = float(chains.jump_rate.mean())
    if chains.evaluations is not None:
        m["evaluations"] = {"forward": chains.evaluations.forward, "backward": chains.evaluations.backward}
    if chains.extra.get("trajectory_length") is not None:
        m["trajectory_length"] = float(chains.extra["trajectory_length"])
    if not diagnostics:
        m["diagnostics"] = "skipped (interrupted after sampling)"
    elif chains.num_draws >= 4 and m.get("stuck_chains", 0) < chains.num_chains:  # two draws per half at least;
        # chains that never moved have no ESS or R-hat worth a number (ArviZ's formulas give the total and 1e16)
        flat = chains.draws.reshape(chains.num_chains, chains.num_draws, -1)
        bulk_e, tail_e, rhat_e = ess_rhat(chains.energy)  # one sort per quantity serves bulk ESS, tail ESS, R-hat
        bulk_z, tail_z, rhat_z = ess_rhat(flat)
        m.update(
            ess_bulk_energy=float(bulk_e), ess_tail_energy=float(tail_e), rhat_energy=float(rhat_e),
            ess_bulk_z_min=float(bulk_z.min()), ess_tail_z_min=float(tail_z.min()), rhat_z_max=float(rhat_z.max()),
        )
        if superchain_size is not None and chains.num_chains // superchain_size >= 2:
            k = chains.num_chains // superchain_size
            m.update(superchains=k, rhat_nested_energy=float(rhat_nested(chains.energy, k)),
                     rhat_nested_z_max=float(rhat_nested(flat, k).max()))
    if chains.log_weights is not None and diagnostics:
        est = chains.log_normalizer()
        m.update(log_normalizer=est.estimate, log_normalizer_stderr=est.stderr if est.reliable else None,
                 importance_ess=est.importance_ess, pareto_k=est.pareto_k, log_normalizer_reliable=est.reliable)
    if chains.extra.get("interrupted"):
        m["interrupted"] = True
    for key in ("stopped_by", "warmup_settled", "online_rhat", "online_ess", "fused_steps", "fused_block"):
        if key in chains.extra:
            m[key] = chains.extra[key]
    reason = unusable(m, chains.num_chains * max(1, chains.steps))
    if reason:
        m["unusable"] = reason
    return m


def unusable(metrics: dict[str, Any], transitions: int) -> str | None:
    """Why a finished run cannot be used: every recorded transition diverged, every chain froze, or no chain whose
    draws were recorded moved in them; else None."""
    if metrics.get("frozen_chains", 0) >= metrics.get("chains", 0) > 0:
        return "every chain froze after a divergent step"
    if transitions and metrics.get("divergences", 0) >= transitions:
        return "every recorded transition diverged"
    if metrics.get("stuck_chains", 0) >= metrics.get("diagnostic_chains", metrics.get("chains", 0)) > 0:
        return f"no chain moved in its {metrics.get('draws')} recorded draws (every proposal was rejected)"
    return None


@torch.no_grad()
def generate_in_batches(generator, z: Tensor, batch: int, condition: Tensor | None = None) -> Tensor:
    """``generator(z)`` in batches (``generator(z, c)`` with per-row conditions)."""
    return torch.cat([generator(z[i:i + batch]) if condition is None else generator(z[i:i + batch], condition[i:i + batch])
                      for i in range(0, z.shape[0], batch)])


def _in_prior_space(chains: Chains, energy) -> Chains:
    """The recorded states mapped from the chains' unconstrained space to the prior's (``z = T(u)``)."""
    prior = getattr(energy, "latent_prior", None)
    if prior is None or prior.standard:
        return chains
    mapped = {name: prior.to_latent(getattr(chains, name)) for name in ("draws", "last", "warmup_draws")
              if getattr(chains, name) is not None}
    return dataclasses.replace(chains, **mapped)


def assemble(blocks: list[BlockRun], generator: nn.Module, interrupted: bool = False, dataset=None,
             extra_metrics: dict[str, Any] | None = None, superchain_size: int | None = None, quality=None,
             view=None, resample: bool = False, seed: int = 0, tracker=None, diagnostics: bool = True,
             energy=None) -> Refinement:
    """Blocks (in index order) -> one :class:`Refinement`: all final states, samples, metrics.

    ``energy`` (the run's :class:`~latentmcmc.LatentEnergy`, when given) makes the samples: ``G(T(u), c)``
    with its prior's map ``T`` and its per-chain conditions; the latents (``z0``, ``z``, the recorded
    draws) are then reported in the prior's space.

    ESS and R-hat are computed over every chain of the blocks that recorded their draws.  ``quality``
    (samples -> metrics; default the data set's) measures the samples before and after, viewed by
    ``view`` (e.g. a reshape to the data's shape).  With AIS weights the samples are also measured
    after a systematic importance resample (``after (resampled)``), which becomes the output with ``resample``.
    ``diagnostics=False`` skips ESS, R-hat and the quality metrics (what a Ctrl-C after sampling skips).
    """
    blocks = sorted(blocks, key=lambda blk: blk.index)
    z0 = torch.cat([blk.z0 for blk in blocks])
    z = torch.cat([blk.z for blk in blocks])
    recorded = [blk.chains for blk in blocks if blk.chains is not None]
    if not recorded:
        raise ValueError("no block recorded its draws (block 0 always does): pass the blocks in full")
    diagnostic = _in_prior_space(Chains.concat(recorded) if len(recorded) > 1 else recorded[0], energy)
    batch = blocks[0].z0.shape[0]
    view = view or (lambda x: x)
    make, condition = (generator, None) if energy is None else (energy.generate, energy.condition)
    if condition is not None:  # the recorded blocks are the first ones: their chains are the first rows
        diagnostic.extra["condition"] = condition[:diagnostic.num_chains]
    before, after = view(generate_in_batches(make, z0, batch, condition)), view(generate_in_batches(make, z, batch, condition))
    if energy is not None:  # report the latents in the prior's space
        z0, z = energy.latent(z0), energy.latent(z)
    metrics = {**run_metrics(diagnostic, superchain_size, diagnostics), **(extra_metrics or {})}
    weights = None
    if all(blk.log_weights is not None for blk in blocks):
        log_w = torch.cat([blk.log_weights for blk in blocks]).double()
        if bool(torch.isfinite(log_w).any()):
            weights = torch.softmax(log_w, 0)
    picked = None
    if weights is not None:
        from ..diagnostics.importance import systematic_resample

        picked = systematic_resample(weights, torch.Generator().manual_seed(int(seed))).to(z.device)
    if len(blocks) > 1:
        acc = torch.cat([blk.acceptance_rate for blk in blocks])
        metrics.update(
            chains=int(z.shape[0]), blocks=len(blocks), block_size=batch, diagnostic_chains=diagnostic.num_chains,
            acceptance=float(acc.mean()), eps_mean=float(torch.cat([blk.eps for blk in blocks]).double().mean()),
            divergences=int(sum(int(blk.divergences.sum()) for blk in blocks)),
            frozen_chains=int(sum(int(blk.frozen.sum()) for blk in blocks)),
        )
    if interrupted:
        metrics["interrupted"] = True
    metrics.pop("unusable", None)
    reason = unusable(metrics, int(z.shape[0]) * max(1, diagnostic.steps))
    if reason and not interrupted:
        metrics["unusable"] = reason
    reference = None if dataset is None else dataset.x
    measure = quality if quality is not None else (dataset.quality if dataset is not None else None)
    if measure is not None and diagnostics:
        q_before, q_after = measure(before), measure(after)
        if q_before is not None:
            name = getattr(quality, "name", None) or (dataset.name if dataset is not None else "quality")
            metrics["quality"] = {"data": name, "before": _plain(q_before), "after": _plain(q_after)}
            if picked is not None:
                metrics["quality"]["after (resampled)"] = _plain(measure(after[picked]))
    labels = class_ids(condition)
    classifier = getattr(measure, "classifier", None)
    if labels is not None and classifier is not None and diagnostics:
        before_acc, after_acc = class_accuracy(classifier, before, labels), class_accuracy(classifier, after, labels)
        metrics["per_class"] = {k: {"chains": v["chains"], "accuracy_before": v["accuracy"],
                                    "accuracy_after": after_acc[k]["accuracy"]} for k, v in before_acc.items()}
    if resample and picked is not None:
        z, after = z[picked], after[picked]
        metrics["resampled"] = "the outputs are an importance resample of the final states under the AIS weights"
    if tracker is not None:
        metrics["tracking"] = tracker.summary()
    return Refinement(diagnostic, z0, z, before, after, metrics, reference, weights,
                      None if tracker is None else tracker.rows, condition=condition)


def _plain(q: dict[str, Any]) -> dict[str, Any]:
    """Quality metrics without their notes (which go to ``quality_notes``), None where not computable."""
    return {k: v for k, v in q.items() if k != "notes"}
