"""``latentmcmc refine``: MCMC in the latent space of a trained model; writes samples, run, metrics, figures."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch
import typer

from ..datafiles import FORMATS
from ..process_group import world_from_env
from ..samplers.registry import SAMPLERS
from ..training.data import DATASETS
from .common import (
    CommandError,
    app,
    check_device,
    exit_for,
    flag,
    parse_shape,
    progress_flag,
    stop_interrupted,
)
from .declared import derived_command, given_values, option_parameter, parameter


def load_target(checkpoint: Optional[Path], generator: Optional[Path], critic: Optional[Path],
                latent_shape: Optional[str], device, condition=None):
    """``(generator, critic, latent_shape, dataset)`` from a latentmcmc checkpoint or two exported programs
    (probed as ``D(G(z, c), c)`` with ``condition``'s first rows when given)."""
    from ..checkpoint import load_models
    from ..io.torch_export import check_latent_shape, load_exported

    if checkpoint is not None and (generator is not None or critic is not None):
        raise CommandError("give either a checkpoint or --generator and --critic, not both")
    dataset = None
    if checkpoint is not None:
        g, u, config = load_models(checkpoint, device)
        shape = parse_shape(latent_shape) if latent_shape else (int(config["latent_dim"]),)
        if config.get("data") in DATASETS:  # a built-in set: its quality metrics (data from files: --features)
            from ..training import load_dataset

            dataset = load_dataset(config["data"])
    elif generator is not None and critic is not None:
        g = load_exported(generator, device, name=f"generator {generator}")
        if not latent_shape:
            takes = getattr(g, "sample_shape", None)
            example = ",".join(str(d) for d in takes) if takes else "128"
            raise CommandError("--latent-shape is needed with --generator/--critic (" + (
                f"this generator takes --latent-shape {example})" if takes else f"e.g. --latent-shape {example})"))
        shape = parse_shape(latent_shape)
        u = load_exported(critic, device, name=f"critic {critic}")
    elif generator is not None or critic is not None:
        given, missing = ("--generator", "--critic") if generator is not None else ("--critic", "--generator")
        no_critic = (" (without one: latentmcmc fit-critic fits one from real samples, or compare --fit-critic REAL)"
                     if generator is not None else "")
        raise CommandError(f"{given} needs {missing} too (and --latent-shape): the latent energy is U(G(z)){no_critic}")
    else:
        raise CommandError("nothing to refine: give a checkpoint (latentmcmc train --out ckpt.pt) "
                           "or --generator g.pt2 --critic u.pt2 --latent-shape N")
    if condition is None:
        if getattr(g, "inputs", 1) > 1:
            raise CommandError(f"the generator takes {g.inputs} inputs (a class-conditional G(z, c)?): give --classes "
                               "or --condition")
        check_latent_shape(g, u, shape, device)
    else:
        from ..conditions import check_conditional

        check_conditional(g, u, shape, condition, device)
    return g, u, shape, dataset


def load_feature_quality(features: Path, reference: Path, classifier: Optional[Path], g, latent_shape, view_shape,
                         device, value_range=None):
    """The user's feature-space metrics: an exported extractor (and classifier) and reference samples (any data
    file :mod:`latentmcmc.datafiles` reads, in the generator's output shape and pixel range)."""
    from ..feature_metrics import FeatureQuality
    from ..io.torch_export import load_exported
    from .fit_critic import read_real

    extractor = load_exported(features, device, name=f"feature extractor {features}")
    judge = load_exported(classifier, device, name=f"classifier {classifier}") if classifier is not None else None
    ref, _, _ = read_real(reference, g, latent_shape, view_shape, value_range, device, what="--reference")
    try:
        return FeatureQuality(extractor, ref.to(device), judge, name=f"features of {features.name}")
    except ImportError as err:
        raise CommandError(str(err)) from err


def warn_critic_output(g, u, shape, critic_output, critic_sign, device) -> None:
    """A warning line when the critic's outputs look like probabilities read as something else."""
    from ..critics import probe_critic_output
    from ..energy import resolve_critic_output

    kind = resolve_critic_output(critic_sign, critic_output)  # a contradiction was refused with the options
    message = probe_critic_output(g, u, shape, kind, device)
    if message:
        typer.echo(f"warning: {message}", err=True)


def sampler_parameters() -> list:
    """``--sampler`` and one option per declared sampler option, from the table as it is now (refine, compare)."""
    from ..refinement.options import REFINE_OPTIONS
    from ..samplers.registry import declared_options, takers

    every = list(SAMPLERS)
    out = [option_parameter(REFINE_OPTIONS["sampler"])]
    for name, option in declared_options().items():
        if option.kind is not None:
            who = takers(name)
            out.append(option_parameter(option, None if who == every else who, [s for s in every if s not in who]))
    return out


def sampler_values(values: dict) -> dict:
    """The sampler options given on the command line, parsed and checked (an error line names the flag)."""
    from ..samplers.registry import declared_options

    return given_values(values, {n: o for n, o in declared_options().items() if o.kind is not None})


def warn_ignored(sampler: str, given: dict) -> None:
    """A warning line for each sampler option given that the chosen sampler does not take."""
    from ..samplers.registry import declared_options, ignored_options

    declared = declared_options()
    for name in ignored_options(sampler, given):
        typer.echo(f"warning: {declared[name].flag} does not apply to --sampler {sampler}; ignored", err=True)


_MODEL = [  # what to refine: a checkpoint, or exported programs (shared with compare)
    parameter("generator", typer.Option(None, help="Generator saved with torch.export.save (.pt2), instead of a "
                                                   "checkpoint.", show_default=False), Optional[Path]),
    parameter("critic", typer.Option(None, help="Critic saved with torch.export.save (.pt2), instead of a checkpoint.",
                                     show_default=False), Optional[Path]),
    parameter("latent_shape", typer.Option(None, help="Latent shape, e.g. 128 or 4,4,8 (needed with --generator).",
                                           show_default=False), Optional[str]),
]

_FEATURES = [  # quality in the user's feature space (shared with compare)
    parameter("features", typer.Option(None, help="A feature extractor saved with torch.export (x -> (n, d)): FD, KID, "
                                                  "precision/recall, density/coverage against --reference (needs "
                                                  "latentmcmc[metrics])", show_default=False), Optional[Path]),
    parameter("reference", typer.Option(None, help=f"Reference samples for --features: {FORMATS}",
                                        show_default=False), Optional[Path]),
    parameter("classifier", typer.Option(None, help="A classifier saved with torch.export (x -> logits) for the "
                                                    "Inception Score", show_default=False), Optional[Path]),
]

_CONDITIONS = [  # class-conditional models (G(z, c), D(x, c))
    parameter("classes", typer.Option(None, help="Class ids for a class-conditional model, G(z, y) and D(x, y), "
                                                 "cycled over the chains: 0,3,7 or 0-9 (one run refines them all)",
                                      show_default=False), Optional[str]),
    parameter("condition", typer.Option(None, help="Any per-chain condition c for G(z, c) and D(x, c): a .npy with one "
                                                   "row per chain (without --chains: as many chains as rows)",
                                        show_default=False), Optional[Path]),
]


def read_condition(values: dict, num_chains: int):
    """The per-chain conditions of ``--classes`` or ``--condition`` (a CommandError naming the flag), or None."""
    from ..conditions import cover_classes, parse_classes, read_conditions

    if values.get("classes") is not None and values.get("condition") is not None:
        raise CommandError("--classes and --condition are two ways to give the conditions: give one")
    try:
        if values.get("classes") is not None:
            return cover_classes(parse_classes(values["classes"]), num_chains)
        if values.get("condition") is not None:
            return read_conditions(values["condition"], num_chains)
    except ValueError as err:
        raise CommandError(str(err)) from None
    return None


class FixedCondition(torch.nn.Module):
    """``z -> G(z, c_0)``: a conditional generator seen with its first chain's condition (for probes of its output)."""

    def __init__(self, generator, condition) -> None:
        super().__init__()
        self.inner, self.condition = generator, condition[:1]

    def forward(self, z):
        return self.inner(z, self.condition.to(z.device).expand(z.shape[0], *self.condition.shape[1:]))


_REFINE_FIELDS = ("num_chains", "steps", "warmup", "adapt", "max_warmup", "until_rhat", "min_ess", "monitor_every",
                  "thin", "seed", "beta", "prior", "critic_sign", "critic_output", "block_size", "record_blocks",
                  "superchains", "keep_warmup", "record", "data_shape", "track_every", "track_chains", "track_metric",
                  "keep", "resample", "fuse", "stream")


def _refine_parameters() -> list:
    from ..refinement.options import REFINE_OPTIONS

    return [
        parameter("checkpoint", typer.Argument(None, help="A checkpoint written by 'latentmcmc train'.",
                                               show_default=False), Optional[Path]),
        *sampler_parameters(),
        *(option_parameter(REFINE_OPTIONS[name]) for name in _REFINE_FIELDS),
        parameter("max_steps", typer.Option(None, help="The cap of a run with stop rules (another name of --steps)  "
                                                       "\\[default: --steps]", show_default=False), Optional[int]),
        parameter("checkpoint_every", typer.Option(None, help="Write the complete run state into OUT every N steps "
                                                              "(warm-up included) and after every block; rerun the "
                                                              "same command with --resume to continue  \\[default: no "
                                                              "checkpoints]", show_default=False), Optional[int]),
        parameter("resume", flag(False, "--resume", help="Continue the run whose state --checkpoint-every wrote into "
                                                         "OUT; the outputs equal an uninterrupted run's."), bool),
        parameter("device", typer.Option("cpu", help="cpu, cuda or cuda:N."), str),
        parameter("out", typer.Option(Path("refined"), help="Output directory (created; files in it are replaced)."),
                  Path),
        *_MODEL,
        *_CONDITIONS,
        *_FEATURES,
        parameter("data_range", typer.Option(None, help="The generator's pixel range LO,HI (image grids; image files' "
                                                        "bytes given as --reference map to it)  \\[default: read off "
                                                        "its samples: 0,1 or -1,1]", show_default=False),
                  Optional[str]),
        parameter("run_file", flag(True, "--run-nc/--no-run-nc", help="Write run.nc (the draws for ArviZ; large for "
                                                                      "big runs)."), bool),
        parameter("figures", flag(True, "--figures/--no-figures", help="Write the PNG figures."), bool),
        parameter("quiet", flag(False, "--quiet", "-q", help="No progress bar."), bool),
    ]


def samplers_paragraph() -> str:
    """The named samplers with their summaries, from the table as it is now (the end of refine's help)."""
    return "Samplers (--sampler): " + "; ".join(f"{name}: {entry.summary}" for name, entry in SAMPLERS.items()) + "."


@derived_command(app, "refine", _refine_parameters, samplers_paragraph)
def refine_command(**values) -> None:
    """Refine samples of a trained generator by MCMC on E(z) = beta U(G(z)) + 0.5|z|^2.

    Writes into OUT: samples.npz (z0, z, x_before, x_after), run.nc (the run for ArviZ), metrics.json
    (acceptance, ESS, R-hat, divergences, quality before/after when the checkpoint knows its data),
    samples.png, energy.png and acceptance.png; then prints a short table. Ctrl-C after warm-up
    stops sampling and writes the draws completed so far (metrics.json says "interrupted").
    """
    from ..output_lock import locked_output
    from ..refinement import RefineOptions
    from ..refinement.options import REFINE_OPTIONS
    from ..report import check_writable

    v = values
    run = given_values(v, {name: REFINE_OPTIONS[name] for name in ("sampler", *_REFINE_FIELDS)})
    if v["max_steps"] is not None:
        if v["steps"] is not None and v["steps"] != v["max_steps"]:
            raise CommandError(f"--steps {v['steps']} and --max-steps {v['max_steps']} disagree: --max-steps is "
                               "another name of --steps (the cap of a run with stop rules); give one")
        run["steps"] = v["max_steps"]
    sampler_options = sampler_values(v)
    sampler = run.get("sampler", "mala")
    for name, value in (("checkpoint-every", v["checkpoint_every"]), ("max-steps", v["max_steps"])):
        if value is not None and value < 1:
            raise CommandError(f"--{name} must be >= 1, got {value}")
    warmup = run.get("warmup", REFINE_OPTIONS["warmup"].default)
    has_warmup = warmup == "auto" or warmup > 0
    run["adapt"] = run.get("adapt", True) and has_warmup
    warn_ignored(sampler, sampler_options)
    for name in ("track_chains", "track_metric"):  # options that only act with --track-every
        if name in run and not run.get("track_every"):
            typer.echo(f"warning: {REFINE_OPTIONS[name].flag} applies only with --track-every; ignored", err=True)
    out, dev = v["out"], check_device(v["device"])
    options = RefineOptions(**run, progress=progress_flag(v["quiet"]), device=dev).replace(**sampler_options)
    check_writable(out)
    rank, distributed = 0, world_from_env() > 1
    if distributed:  # launched by torchrun: shard the chains over the ranks, rank 0 writes
        from ..process_group import init_distributed

        rank, _, dev = init_distributed(dev)
        options = options.replace(device=dev)
    with locked_output(out, active=rank == 0):  # one run at a time into OUT; a killed run's leftovers go
        _refine_locked(v, options, out, dev, distributed)


def _refine_locked(v: dict, options, out: Path, dev, distributed: bool) -> None:
    """The rest of refine, holding the lock on OUT."""
    from ..refinement import refine
    from ..report import format_table, write_report
    from ..signals import interrupts_deferred

    sampler = options.sampler
    features, reference, classifier = v["features"], v["reference"], v["classifier"]
    if (features is None) != (reference is None):
        raise CommandError("--features and --reference go together (an extractor and the samples to compare with)")
    if classifier is not None and features is None:
        raise CommandError("--classifier (the Inception Score) is measured with --features and --reference")
    checkpoint, generator, critic = v["checkpoint"], v["generator"], v["critic"]
    from_file = v.get("condition") is not None and v.get("num_chains") is None  # --condition alone: a chain a row
    condition = read_condition(v, None if from_file else options.num_chains)
    if from_file:
        options = options.replace(num_chains=int(condition.shape[0]))
    g, u, shape, dataset = load_target(checkpoint, generator, critic, v["latent_shape"], dev, condition)
    conditioned = g if condition is None else FixedCondition(g, condition)  # what probes of G's output call
    if critic is not None and condition is None:  # a model trained elsewhere (latentmcmc's own critics output energies)
        warn_critic_output(g, u, shape, options.critic_output, options.critic_sign, dev)
    from .fit_critic import parse_range

    value_range = parse_range(v["data_range"])
    quality = (load_feature_quality(features, reference, classifier, conditioned, shape, options.data_shape, dev,
                                    value_range)
               if features else None)
    if options.track_every and quality is None and dataset is None:
        raise CommandError("--track-every needs quality metrics: a checkpoint that knows its data, or --features and "
                           "--reference")
    if not options.prior:
        warnings.filterwarnings("ignore", message=r"LatentEnergy\(prior=False\)")
        typer.echo("warning: --prior none: the latent target can be improper (chains may drift where G extrapolates)",
                   err=True)
    state_file = out / RESUME_FILE
    checkpoint_every, resume = v["checkpoint_every"], v["resume"]
    saving = {}
    if state_file.exists() and not resume:  # starting afresh would replace it: hours of sampling lost to a missed flag
        raise CommandError(f"{out} holds an interrupted run's state ({RESUME_FILE}, {_where(state_file)}): rerun with "
                           f"--resume to continue it, or remove {state_file} (or pick another --out) to start afresh")
    if checkpoint_every is not None or resume:
        if resume and checkpoint_every is None:
            raise CommandError("--resume continues a run that wrote checkpoints: give the same --checkpoint-every")
        if resume and not state_file.exists():
            done = (out / "samples.npz").exists()
            raise CommandError(f"nothing to resume in {out}: " + ("the run there is complete (its state is removed "
                               "once the outputs are written)" if done else f"no saved run state ({RESUME_FILE})"))
        if resume:
            _RESUMED_AT["where"] = _where(state_file)
        out.mkdir(parents=True, exist_ok=True)
        saving = dict(checkpoint=state_file, checkpoint_every=checkpoint_every, resume=resume,
                      source=_source_digest(checkpoint, generator, critic),
                      on_resume=lambda path: typer.echo(f"resuming the run saved in {path} "
                                                        f"({_RESUMED_AT['where']})", err=True))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".* not apply to sampler")  # said above, with the flags
            result = refine(g, u, shape, options, dataset=dataset, distributed=distributed, quality=quality,
                            condition=condition, **saving)
        if result is None:  # a rank other than 0 of a torchrun job: rank 0 writes (main() then leaves the group)
            return
    except KeyboardInterrupt:
        kept = (f"; the run state stays in {state_file}: rerun with --resume to continue"
                if saving and state_file.exists() else "")
        stop_interrupted(f"interrupted during warm-up: no outputs were written to {out}{kept}")
    result.value_range = value_range
    if result.chains.num_draws == 0:
        stop_interrupted(f"interrupted before the first kept draw: nothing was written to {out}")
    source = str(checkpoint) if checkpoint is not None else f"{generator} + {critic}"
    entry = SAMPLERS[sampler]
    target = entry.default_target_accept if entry.has_step_size else None
    report = dict(target_accept=target if options.adapt else None,
                  extra_metrics={"source": source, "latent_shape": list(shape), "device": str(dev)})
    try:
        write_report(result, out, figures=v["figures"], run_file=v["run_file"], **report)
    except KeyboardInterrupt:  # the draws are done: write them (quickly, Ctrl-C held back) rather than lose them
        result.metrics["interrupted"] = True
        with interrupts_deferred():
            write_report(result, out, figures=False, run_file=False, replace_all=True, **report)
        stop_interrupted(f"interrupted while writing: {out} holds this run's samples.npz and metrics.json (no run.nc "
                         "or figures)")
    if saving and not result.metrics.get("interrupted"):
        _finish_checkpoints(out, state_file, resume)
    elif saving:
        typer.echo(f"the run state stays in {state_file}: rerun the same command with --resume to continue", err=True)
    typer.echo(format_table(result.metrics))
    written = ["samples.npz"] + (["run.nc"] if v["run_file"] else []) + ["metrics.json"] + (
        ["quality.csv"] if result.tracking else []) + (["figures"] if v["figures"] else [])
    typer.echo(f"wrote {out}/ ({', '.join(written)})")
    exit_for(result.metrics)


RESUME_FILE = ".latentmcmc-resume.pt"
_RESUMED_AT: dict[str, str] = {}


def _where(state_file: Path) -> str:
    """Which block and step a run state was saved at (for resume.log)."""
    from ..samplers.resume import load_state

    blocks = load_state(state_file)["blocks"]  # a damaged state is refused here, before anything is said or run
    current = blocks.get("current")
    if current is None:
        return f"after {len(blocks['done'])} finished block(s)"
    return f"block {current['block']}, step {current['state']['run']['i']}"


def _source_digest(checkpoint, generator, critic) -> str:
    """What the models are: their files' names and a hash of their bytes (a resumed run must use the same)."""
    import hashlib

    parts = []
    for path in (p for p in (checkpoint, generator, critic) if p is not None):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        parts.append(f"{Path(path).name}:{h.hexdigest()[:16]}")
    return " + ".join(parts)


def _finish_checkpoints(out: Path, state_file: Path, resumed: bool) -> None:
    """After the outputs are written: note a resume in resume.log and remove the run-state files."""
    import datetime

    if resumed:
        with open(out / "resume.log", "a") as log:
            log.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} resumed from {state_file.name} "
                      f"({_RESUMED_AT.get('where', 'a checkpoint')}) and finished\n")
    for path in [state_file, *out.glob(RESUME_FILE + ".rank*")]:
        path.unlink(missing_ok=True)

