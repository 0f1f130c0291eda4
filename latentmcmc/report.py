"""Write a refinement's outputs into a directory as one unit: all new files, or the old ones untouched.

Files: ``samples.npz`` (z0, z, x_before, x_after), ``run.nc`` (the run for ArviZ), ``metrics.json``,
and the figures ``samples.png``, ``energy.png``, ``acceptance.png``.  They are written into a staging
directory beside the output first; only when all of them are complete are they moved in, one rename
each, with Ctrl-C held back for those few renames.  A failure or an interrupt while writing
therefore leaves the output directory as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .atomic import WriteError, default_mode, describe_os_error, write_failure
from .refinement import Refinement
from .signals import interrupts_deferred

__all__ = ["write_report", "check_writable", "format_table", "staged_outputs", "write_json", "OUTPUT_FILES"]

OUTPUT_FILES = ("samples.npz", "run.nc", "metrics.json", "samples.png", "energy.png", "acceptance.png")
"""The files a refinement writes into its output folder (with quality tracking also ``TRACKING_FILES``)."""
TRACKING_FILES = ("quality.csv", "quality.png")


def check_writable(out: str | os.PathLike) -> Path:
    """Fail now, before any sampling, if ``out`` cannot become a directory we can write into."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output directory {out} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output directory {out} cannot be created: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".latentmcmc-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"output directory {out} cannot be written: {parent} {describe_os_error(err)}") from err
    return out



def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _save_figure(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.08)  # titles and labels never touch the edge


@contextlib.contextmanager
def staged_outputs(out: str | os.PathLike, replace_all: bool = False) -> Iterator[Path]:
    """Yield a staging folder inside ``out``; on success move everything written there into ``out`` as one set.

    On a failure or Ctrl-C before the moves, ``out`` is left as it was (and removed if this call created
    it); Ctrl-C is held back during the few renames.
    """
    out = check_writable(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    committed = False
    try:
        try:
            yield staging
        except (OSError, RuntimeError, WriteError) as err:
            cause = write_failure(err)
            if cause is None:
                raise
            raise WriteError(f"could not write the outputs into {out}: {out} {describe_os_error(cause)}; "
                             + ("nothing was kept" if created else "its previous files are as they were")) from err
        mode = default_mode()
        with interrupts_deferred():
            written = sorted(staging.iterdir())
            for path in written:
                os.chmod(path, mode)
                os.replace(path, out / path.name)
            if replace_all:
                for name in set(OUTPUT_FILES + TRACKING_FILES) - {p.name for p in written}:
                    (out / name).unlink(missing_ok=True)
            committed = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not committed:
            shutil.rmtree(out, ignore_errors=True)  # we made it for this run: leave no empty directory behind


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, non-finite floats as null / "inf" / "-inf"."""
    path.write_text(json.dumps(_json_safe(data), indent=2) + "\n")


def write_report(result: Refinement, out: str | os.PathLike, figures: bool = True, target_accept: float | None = None,
                 extra_metrics: dict[str, Any] | None = None, run_file: bool = True, replace_all: bool = False) -> Path:
    """Write the outputs of ``result`` into ``out`` (created if needed) as one set; returns ``out``.

    ``samples.npz`` (``z0``, ``z``, ``x_before``, ``x_after``, ``weights`` of an annealed run and each chain's
    ``condition`` of a conditional one),
    ``run.nc`` (unless ``run_file`` is False), ``metrics.json``, ``quality.csv`` when quality was
    tracked, and the figures.  ``replace_all``: the files written are the whole new set, and an earlier run's
    other outputs in ``out`` are removed with the same renames (a partial set is never mixed with an old one).
    """
    with staged_outputs(out, replace_all) as staging:
        arrays = dict(z0=result.z0.detach().cpu().numpy(), z=result.z.detach().cpu().numpy(),
                      x_before=result.before.detach().cpu().numpy(), x_after=result.after.detach().cpu().numpy())
        if result.weights is not None:
            arrays["weights"] = result.weights.detach().cpu().numpy()
        if result.condition is not None:
            arrays["condition"] = result.condition.detach().cpu().numpy()
        np.savez_compressed(staging / "samples.npz", **arrays)
        if run_file:
            result.chains.save(staging / "run.nc")
        write_json(staging / "metrics.json", {**result.metrics, **(extra_metrics or {})})
        if result.tracking:
            write_tracking_csv(staging / "quality.csv", result.tracking)
        if figures:
            from .conditions import class_ids
            from .plots import (
                acceptance_figure,
                energy_trace_figure,
                quality_figure,
                samples_figure,
            )

            _save_figure(samples_figure(result.before, result.after, result.reference, quality=result.metrics.get("quality"),
                                        value_range=result.value_range, prior=result.metrics.get("prior", "normal"),
                                        classes=class_ids(result.condition)),
                         staging / "samples.png")
            _save_figure(energy_trace_figure(result.chains), staging / "energy.png")
            _save_figure(acceptance_figure(result.chains, target_accept), staging / "acceptance.png")
            if result.tracking:
                _save_figure(quality_figure(result.tracking, result.metrics.get("tracking", {})), staging / "quality.png")
    return Path(out)


def write_tracking_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The quality measured along the chain, one row per tracked step (empty cells where not computable)."""
    import csv

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _cell(value: float | int | None) -> str:
    """A 10-wide table cell: integers as they are, floats to 3 decimals, NaN or None as n/a."""
    if isinstance(value, int):
        return f"{value:>10d}"
    return f"{value:>10.3f}" if _finite(value) else f"{'n/a':>10}"


def _sampler_class(name: str):
    """The sampler class a run's ``sampler`` field names (its class name), from the table; None if unknown."""
    from .samplers.registry import SAMPLERS

    return next((entry.cls for entry in SAMPLERS.values() if entry.cls.__name__ == name), None)


def _per_step(metrics: dict[str, Any]) -> float | None:
    """Model passes per chain and step, the initial evaluation excluded."""
    sampled = metrics.get("steps") or (metrics.get("draws") or 0) * (metrics.get("thin") or 1)
    steps = (metrics.get("warmup") or 0) + sampled
    ev = metrics.get("evaluations")
    if not steps or not ev:
        return None
    return (ev["forward"] + ev["backward"] - 1 - (1 if ev["backward"] else 0)) / steps


def _rhat_hint(sampler: str) -> str:
    """What an R-hat above 1.01 most likely means for this sampler, and what to try."""
    head = "  (R-hat > 1.01: the chains disagree"
    cls = _sampler_class(sampler)
    if cls is not None and cls.global_moves:
        return head + "; the global moves have not yet balanced the modes: more steps or more --candidates)"
    if cls is not None and cls.anneals:
        return head + ("; annealed chains keep the proportions the annealing left them in, which the importance "
                       "weights correct: use the weighted draws, or a slower schedule (more --warmup))")
    return head + ("; typically because each stays near the mode it started in: that is refinement, not mixing "
                   "across modes. For mode weights use a global sampler: --sampler isir or ex2mcmc)")


def format_table(metrics: dict[str, Any]) -> str:
    """The short before/after table the CLI prints at the end of a run."""
    lines = [
        f"{'sampler':<28}{metrics.get('sampler', '')}",
        f"{'chains x draws':<28}{metrics.get('chains')} x {metrics.get('draws')} (after {metrics.get('warmup')} warm-up"
        + (f"; {metrics['steps']} steps sampled, the last kept)" if metrics.get("steps") and metrics.get("draws") == 1
           and metrics["steps"] > 1 else ")"),
        *([f"{'blocks':<28}{metrics['blocks']} of {metrics['block_size']} chains; diagnostics from "
             f"{metrics['diagnostic_chains']} chains" + (f", {metrics['world_size']} processes" if "world_size" in metrics
                                                        else "")] if "blocks" in metrics else []),
        f"{'step size eps (mean)':<28}" + (f"{metrics['eps_mean']:.4g}" if _finite(metrics.get("eps_mean"))
                                             else "n/a (no step size)"),
        f"{'acceptance':<28}{metrics.get('acceptance', float('nan')):.3f}"
        + (" (local steps)" if "jump_rate" in metrics and getattr(_sampler_class(metrics.get("sampler", "")),
                                                                  "has_step_size", False) else ""),
        *([f"{'global jump rate':<28}{metrics['jump_rate']:.3f}"] if "jump_rate" in metrics else []),
        *([f"{'model passes per chain':<28}{metrics['evaluations']['forward']} forward, "
           f"{metrics['evaluations']['backward']} backward"
           + (f" ({_per_step(metrics):.1f} per step)" if _per_step(metrics) is not None else "")]
          if "evaluations" in metrics else []),
        *([f"{'steps in compiled blocks':<28}{metrics['fused_steps']} per chain (--fuse"
           + (f", {metrics['fused_block']} steps per block)" if metrics.get("fused_block") else ")")]
          if metrics.get("fused_steps") else []),
        *([f"{'trajectory length (ChEES)':<28}{metrics['trajectory_length']:.3g}"]
          if metrics.get("trajectory_length") is not None else []),
        f"{'divergences':<28}{metrics.get('divergences', 0)}",
        *([f"{'stuck chains':<28}{metrics['stuck_chains']} of {metrics.get('diagnostic_chains', metrics.get('chains'))} "
           "never moved in their recorded draws"] if metrics.get("stuck_chains") else []),
    ]
    if "ess_bulk_energy" in metrics and not metrics.get("unusable"):
        lines += [
            f"{'ESS bulk / tail (energy)':<28}{metrics['ess_bulk_energy']:.0f} / {metrics['ess_tail_energy']:.0f}",
            f"{'ESS bulk (worst z coord)':<28}{metrics['ess_bulk_z_min']:.0f}",
            f"{'R-hat (energy / worst z)':<28}" + (f"{metrics['rhat_energy']:.3f} / {metrics['rhat_z_max']:.3f}"
                                                     if metrics.get("chains", 2) > 1 else "n/a (one chain)"),
        ]
        if "rhat_nested_energy" in metrics:
            lines.append(f"{'nested R-hat':<28}"
                         f"{metrics['rhat_nested_energy']:.3f} / {metrics['rhat_nested_z_max']:.3f} ({metrics['superchains']} superchains)")
    if "warmup_settled" in metrics:
        lines.append(f"{'warm-up (auto)':<28}" + (f"eps settled after {metrics['warmup']} steps" if metrics["warmup_settled"]
                                                  else f"did not settle within {metrics['warmup']} steps (the cap)"))
    if metrics.get("stopped_by"):
        lines.append(f"{'stopped by':<28}{metrics['stopped_by']}")
    if metrics.get("unusable"):
        lines.append(f"  (UNUSABLE: {metrics['unusable']}; the chains are where they started or stuck: lower --eps, or "
                     "let warm-up adapt it)")
    elif (max(metrics["rhat_nested_energy"], metrics["rhat_nested_z_max"]) if "rhat_nested_energy" in metrics
          else max(metrics.get("rhat_energy", 1.0), metrics.get("rhat_z_max", 1.0))) > 1.01:
        lines.append(_rhat_hint(metrics.get("sampler", "")))
    if "log_normalizer" in metrics:
        if metrics.get("log_normalizer_reliable", True):
            lines.append(f"{'log Z (AIS)':<28}{metrics['log_normalizer']:.3f} +- {metrics['log_normalizer_stderr']:.3f}"
                         f" (importance ESS {metrics['importance_ess']:.0f})")
        else:
            lines.append(f"{'log Z (AIS)':<28}{metrics['log_normalizer']:.3f}, UNRELIABLE: importance ESS "
                         f"{metrics['importance_ess']:.1f} of {metrics.get('chains')}, Pareto k "
                         f"{metrics['pareto_k']:.2f}; no error bar can be given")
    quality = metrics.get("quality")
    if quality:
        resampled = "after (resampled)" in quality
        lines.append(f"{'quality (' + quality['data'] + ')':<28}{'before':>10}{'after':>10}"
                     + (f"{'resampled':>11}" if resampled else ""))
        for key, value in quality["before"].items():
            lines.append(f"{'  ' + key:<28}" + _cell(value) + _cell(quality["after"].get(key))
                         + (" " + _cell(quality["after (resampled)"].get(key)) if resampled else ""))
        missing = [when for when in ("before", "after") if "kl" in quality[when] and not _finite(quality[when]["kl"])]
        if missing:
            lines.append(f"  (kl n/a {' and '.join(missing)}: no high-quality sample, so there is no mode histogram)")
        if any(quality[when].get(k) is None for when in ("before", "after") for k in quality[when]):
            lines.append("  (n/a: too few samples or non-finite features for that metric)")
        if metrics.get("superchains"):
            lines.append(f"  (before: the {metrics['superchains']} shared starting points of the superchains, each "
                         "repeated)")
        if quality["data"].startswith("features of"):
            lines.append(f"  (measured in the {quality['data']}: not Inception FIDs, and comparable only with the same "
                         "extractor)")
        if resampled:
            ok = metrics.get("log_normalizer_reliable", True)
            lines.append(f"  (resampled: an importance resample under the AIS weights, importance ESS "
                         f"{metrics.get('importance_ess', float('nan')):.1f}"
                         + ("" if ok else "; TOO FEW EFFECTIVE WEIGHTS to trust it") + ")")
    per_class = metrics.get("per_class")
    if per_class:
        lines.append(f"{'class accuracy':<28}{'before':>10}{'after':>10}{'chains':>8}")
        shown = list(per_class.items())
        for k, row in shown[:20]:
            lines.append(f"{'  class ' + k:<28}" + _cell(row["accuracy_before"]) + _cell(row["accuracy_after"])
                         + f"{row['chains']:>8}")
        if len(shown) > 20:
            mean = {w: sum(r[f"accuracy_{w}"] for _, r in shown) / len(shown) for w in ("before", "after")}
            lines.append(f"{f'  mean of {len(shown)} classes':<28}" + _cell(mean["before"]) + _cell(mean["after"])
                         + "  (every class: metrics.json)")
        lines.append("  (the share of each class's samples the classifier gives that class)")
    tracking = metrics.get("tracking")
    if tracking and tracking.get("best_step") is not None:
        lines.append(f"{'tracked quality':<28}best {tracking['metric']} {tracking['best_value']:.4g} at step "
                     f"{tracking['best_step']} (every {tracking['every']} steps, {tracking['chains']} chains; "
                     "quality.csv)" + (" - kept those states" if metrics.get("kept") == "best" else ""))
    if metrics.get("diagnostics"):
        lines.append(f"(diagnostics {metrics['diagnostics']}: the draws are complete; 'latentmcmc diagnose' computes "
                     "them from run.nc)")
    elif metrics.get("interrupted"):
        lines.append("(interrupted: the run was stopped early; the outputs hold the draws completed so far)")
    return "\n".join(lines)
