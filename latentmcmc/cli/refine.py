"""``latentmcmc refine``: MCMC in the latent space of a trained model; writes samples, run, metrics, figures."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from ..critics import CRITIC_OUTPUTS
from ..process_group import world_from_env
from ..samplers.registry import COMPILE_CHOICES, SAMPLERS
from ..samplers.schedules import SCHEDULES
from .common import (
    EXIT_INTERRUPTED,
    CommandError,
    app,
    check_choice,
    check_device,
    choices,
    critic_output_option,
    critic_sign_option,
    described,
    exit_for,
    flag,
    live_help,
    parse_fuse,
    parse_shape,
    progress_flag,
)


def load_target(checkpoint: Optional[Path], generator: Optional[Path], critic: Optional[Path],
                latent_shape: Optional[str], device):
    """``(generator, critic, latent_shape, dataset)`` from a latentmcmc checkpoint or two exported programs."""
    from ..checkpoint import load_models
    from ..io.torch_export import check_latent_shape, load_exported

    if checkpoint is not None and (generator is not None or critic is not None):
        raise CommandError("give either a checkpoint or --generator and --critic, not both")
    dataset = None
    if checkpoint is not None:
        g, u, config = load_models(checkpoint, device)
        shape = parse_shape(latent_shape) if latent_shape else (int(config["latent_dim"]),)
        if config.get("data"):
            from ..training import load_dataset

            dataset = load_dataset(config["data"])
    elif generator is not None and critic is not None:
        if not latent_shape:
            raise CommandError("--latent-shape is needed with --generator/--critic (e.g. --latent-shape 128)")
        shape = parse_shape(latent_shape)
        g = load_exported(generator, device, name=f"generator {generator}")
        u = load_exported(critic, device, name=f"critic {critic}")
    elif generator is not None or critic is not None:
        given, missing = ("--generator", "--critic") if generator is not None else ("--critic", "--generator")
        raise CommandError(f"{given} needs {missing} too (and --latent-shape): the latent energy is U(G(z))")
    else:
        raise CommandError("nothing to refine: give a checkpoint (latentmcmc train --out ckpt.pt) "
                           "or --generator g.pt2 --critic u.pt2 --latent-shape N")
    check_latent_shape(g, u, shape, device)
    return g, u, shape, dataset


def load_feature_quality(features: Path, reference: Path, classifier: Optional[Path], g, latent_shape, view_shape,
                         device):
    """The user's feature-space metrics: an exported extractor (and classifier) and reference samples (.npz)."""
    import numpy as np
    import torch

    from ..feature_metrics import FeatureQuality
    from ..io.torch_export import load_exported

    extractor = load_exported(features, device, name=f"feature extractor {features}")
    judge = load_exported(classifier, device, name=f"classifier {classifier}") if classifier is not None else None
    if not reference.is_file():
        raise CommandError(f"no reference data at {reference}")
    try:
        with np.load(reference, allow_pickle=False) as data:
            names = list(data.files)
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise CommandError(f"{reference} holds several arrays ({', '.join(names)}); name the samples 'x'")
            ref = torch.as_tensor(data[key]).float()
    except (OSError, ValueError) as err:
        raise CommandError(f"{reference} is not a NumPy .npz of reference samples ({err})") from err
    with torch.no_grad():
        sample = g(torch.zeros(2, *latent_shape, device=device))
    data_shape = tuple(view_shape) if view_shape else tuple(sample.shape[1:])
    if tuple(ref.shape[1:]) != data_shape:
        raise CommandError(f"the reference samples have shape {tuple(ref.shape[1:])} but the generator's samples are "
                           f"{data_shape}" + ("" if view_shape else " (--data-shape views them otherwise)"))
    try:
        return FeatureQuality(extractor, ref.to(device), judge, name=f"features of {features.name}")
    except ImportError as err:
        raise CommandError(str(err)) from err


def warn_critic_output(g, u, shape, critic_output, critic_sign, device) -> None:
    """A warning line when the critic's outputs look like probabilities read as something else."""
    from ..critics import probe_critic_output
    from ..energy import resolve_critic_output

    try:
        kind = resolve_critic_output(critic_sign, critic_output)
    except ValueError as err:
        raise CommandError(str(err).replace("critic_sign=-1", "--critic-sign -1").replace("critic_output=", "--critic-output "))
    message = probe_critic_output(g, u, shape, kind, device)
    if message:
        typer.echo(f"warning: {message}", err=True)


def _warn_ignored(sampler: str, given: dict) -> None:
    """A warning line for each option set away from its default that the chosen sampler does not take."""
    takes = SAMPLERS[sampler].options
    for name, (value, default) in given.items():
        if value != default and name not in takes:
            typer.echo(f"warning: --{name.replace('_', '-')} does not apply to --sampler {sampler}; ignored", err=True)


@app.command("refine")
def refine_command(
    checkpoint: Optional[Path] = typer.Argument(None, help="A checkpoint written by 'latentmcmc train'.", show_default=False),
    sampler: str = live_help(typer.Option("mala"), lambda: f"The sampler: {described(SAMPLERS)}."),
    eps: float = typer.Option(0.01, help="Step size: the noise variance of z' = z - (eps/2) grad E + sqrt(eps) xi "
                                          "(hmc: the leapfrog step size); the starting value when adapting."),
    steps: int = typer.Option(500, help="Recorded steps per chain after warm-up (the cap with --until-rhat/--min-ess)."),
    warmup: str = typer.Option("500", help="Warm-up steps (step-size adaptation; annealing for annealed samplers), "
                                           "or 'auto': adapt until eps and the acceptance settle (at most --max-warmup)."),
    max_warmup: int = typer.Option(1000, help="Cap of --warmup auto."),
    until_rhat: Optional[float] = typer.Option(None, help="Stop the recorded steps once the rank R-hat of the energy "
                                                          "and the first coordinates is at most this (e.g. 1.01)",
                                               show_default=False),
    min_ess: Optional[float] = typer.Option(None, help="Stop the recorded steps once their bulk ESS is at least this "
                                                       "(with --until-rhat: both)", show_default=False),
    max_steps: Optional[int] = typer.Option(None, help="The cap of a run with stop rules (the same as --steps)",
                                            show_default=False),
    monitor_every: int = typer.Option(100, help="Online R-hat and ESS every this many recorded steps, in the progress "
                                                "bar and the report (0: off)."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Write the complete run state into OUT every N steps "
                                                              "(warm-up included) and after every block; rerun the same "
                                                              "command with --resume to continue  \\[default: no "
                                                              "checkpoints]", show_default=False),
    resume: bool = flag(False, "--resume", help="Continue the run whose state --checkpoint-every wrote into OUT; the "
                                                "outputs equal an uninterrupted run's."),
    adapt: bool = flag(True, "--adapt/--no-adapt", help="Adapt eps by dual averaging during warm-up."),
    chains: int = typer.Option(1000, help="Number of chains (each starts from its own z ~ N(0, I))."),
    beta: float = typer.Option(1.0, help="Inverse temperature on the critic: E(z) = beta U(G(z)) + 0.5|z|^2."),
    prior: bool = flag(True, "--prior/--no-prior", help="Keep the 0.5|z|^2 prior term of E."),
    schedule: str = typer.Option("linear", help=f"Annealing schedule of annealed samplers: {choices(SCHEDULES)}."),
    candidates: int = typer.Option(10, help="isir, ex2mcmc, flex2mcmc: points per global move, the current one "
                                            "included (candidates - 1 forward passes)."),
    local_steps: int = typer.Option(3, help="ex2mcmc, flex2mcmc: MALA steps after each global move."),
    leapfrog_steps: int = typer.Option(10, help="hmc: leapfrog steps per trajectory (the starting length with --chees)."),
    chees: bool = flag(False, "--chees", help="hmc: adapt the trajectory length across chains by ChEES in warm-up."),
    flow_lr: float = typer.Option(1e-3, help="flex2mcmc: Adam learning rate of the flow fitted in warm-up."),
    thin: int = typer.Option(1, help="Keep every thin-th draw."),
    seed: int = typer.Option(0, help="Seed of the starting points and of the sampler."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    out: Path = typer.Option(Path("refined"), help="Output directory (created; files in it are replaced)."),
    generator: Optional[Path] = typer.Option(None, help="Generator saved with torch.export.save (.pt2), instead of a checkpoint."),
    critic: Optional[Path] = typer.Option(None, help="Critic saved with torch.export.save (.pt2), instead of a checkpoint."),
    latent_shape: Optional[str] = typer.Option(None, help="Latent shape, e.g. 128 or 4,4,8 (needed with --generator)."),
    critic_output: Optional[str] = critic_output_option(),
    critic_sign: float = critic_sign_option(),
    keep_warmup: bool = flag(False, "--keep-warmup", help="Also record the warm-up (shown in the figures)."),
    block_size: Optional[int] = typer.Option(None, help="Run the chains in blocks of this many, each seeded by "
                                                        "(seed, block)  \\[default: one block; under torchrun "
                                                        "chains / world size]", show_default=False),
    superchains: Optional[int] = typer.Option(None, help="Group the chains into K superchains sharing their starting "
                                                        "point and report nested R-hat (Margossian et al. 2024), the "
                                                        "R-hat for many short chains  \\[default: none]",
                                              show_default=False),
    record_blocks: Optional[int] = typer.Option(None, help="Record every draw of the first N blocks only (bounded "
                                                           "memory; ESS/R-hat from them)  \\[default: all]",
                                                show_default=False),
    compile_mode: str = typer.Option("off", "--compile", help="Compile the energy's forward+backward with "
                                     f"torch.compile: {choices(COMPILE_CHOICES)} (reduce-overhead: CUDA graphs)."),
    fuse: str = typer.Option("auto", help="Run blocks of steps as one compiled graph: auto (when the run is big "
                                          "enough to repay compiling: >= 400 steps and 20M chain-steps or 5e13 "
                                          "model FLOPs; a hundredth on CUDA), on (blocks of 10), off, or a block "
                                          "length."),
    stream_draws: Optional[int] = typer.Option(None, help="Keep the recorded draws in host memory, copied from the "
                                                         "GPU every N draws (GPU memory then holds N draws)  "
                                                         "\\[default: on the device]", show_default=False),
    data_shape: Optional[str] = typer.Option(None, help="View the generator's output as samples of this shape, e.g. "
                                                         "1,28,28 (figures and metrics)  \\[default: as output]",
                                             show_default=False),
    features: Optional[Path] = typer.Option(None, help="A feature extractor saved with torch.export (x -> (n, d)): "
                                                       "FD, KID, precision/recall, density/coverage against "
                                                       "--reference (needs latentmcmc[metrics])", show_default=False),
    reference: Optional[Path] = typer.Option(None, help="Reference samples (.npz, one array or 'x') for --features",
                                             show_default=False),
    classifier: Optional[Path] = typer.Option(None, help="A classifier saved with torch.export (x -> logits) for the "
                                                         "Inception Score", show_default=False),
    track_every: Optional[int] = typer.Option(None, help="Measure the quality of --track-chains chains every N steps "
                                                         "(warm-up included): quality.csv and quality.png  "
                                                         "\\[default: off]", show_default=False),
    track_chains: int = typer.Option(1000, help="Chains whose quality --track-every measures."),
    track_metric: Optional[str] = typer.Option(None, help="The tracked metric that decides the best step  \\[default: "
                                                          "fd, else kid, else hq_fraction]", show_default=False),
    keep: str = typer.Option("last", help="last: the chains' final states; best: their states at the best tracked "
                                          "step (a heuristic: not draws from exp(-E))."),
    resample: bool = flag(False, "--resample", help="Annealed samplers: output an importance resample of the final "
                                                    "states under the AIS weights."),
    record: str = typer.Option("full", help="full: keep every (thinned) draw; last: only the final states (no ESS or "
                                            "R-hat; for big runs)."),
    run_file: bool = flag(True, "--run-nc/--no-run-nc", help="Write run.nc (the draws for ArviZ; large for big runs)."),
    figures: bool = flag(True, "--figures/--no-figures", help="Write the PNG figures."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Refine samples of a trained generator by MCMC on E(z) = beta U(G(z)) + 0.5|z|^2.

    Writes into OUT: samples.npz (z0, z, x_before, x_after), run.nc (the run for ArviZ), metrics.json
    (acceptance, ESS, R-hat, divergences, quality before/after when the checkpoint knows its data),
    samples.png, energy.png and acceptance.png; then prints a short table. Ctrl-C after warm-up
    stops sampling and writes the draws completed so far (metrics.json says "interrupted").
    """
    from ..refinement import RefineOptions, refine
    from ..report import check_writable, format_table, write_report

    check_choice("--sampler", sampler, SAMPLERS, "sampler")
    if not eps > 0 or eps == float("inf"):
        raise CommandError(f"--eps must be a finite number > 0, got {eps}")
    check_choice("--schedule", schedule, SCHEDULES, "schedule")
    if warmup != "auto":
        try:
            warmup = int(warmup)
        except ValueError:
            raise CommandError(f"--warmup must be a number of steps or 'auto', got {warmup!r}") from None
    if max_steps is not None:
        steps = max_steps
    for name, value, low in (("chains", chains, 1), ("steps", steps, 1), ("warmup", 0 if warmup == "auto" else warmup, 0),
                             ("thin", thin, 1), ("max-warmup", max_warmup, 100), ("monitor-every", monitor_every, 0),
                             ("checkpoint-every", 1 if checkpoint_every is None else checkpoint_every, 1),
                             ("block-size", 1 if block_size is None else block_size, 1),
                             ("stream-draws", 1 if stream_draws is None else stream_draws, 1)):
        if value < low:
            raise CommandError(f"--{name} must be >= {low}, got {value}")
    if until_rhat is not None and not until_rhat > 1.0:
        raise CommandError(f"--until-rhat must be a number > 1 (such as 1.01), got {until_rhat}")
    if min_ess is not None and not min_ess > 0:
        raise CommandError(f"--min-ess must be > 0, got {min_ess}")
    if SAMPLERS[sampler].anneals and (warmup == "auto" or warmup < 1):
        raise CommandError("annealed samplers anneal over a warm-up of known length: give --warmup as a number >= 1")
    if record_blocks is not None and record_blocks < 1:
        raise CommandError(f"--record-blocks must be >= 1, got {record_blocks}")
    check_choice("--compile", compile_mode, COMPILE_CHOICES, "mode")
    fuse_value = parse_fuse(fuse)
    _warn_ignored(sampler, {"candidates": (candidates, 10), "local_steps": (local_steps, 3),
                            "leapfrog_steps": (leapfrog_steps, 10), "chees": (chees, False), "flow_lr": (flow_lr, 1e-3),
                            "schedule": (schedule, "linear"), "eps": (eps, 0.01)})
    dev = check_device(device)
    check_writable(out)
    rank, distributed = 0, world_from_env() > 1
    if distributed:  # launched by torchrun: shard the chains over the ranks, rank 0 writes
        from ..process_group import init_distributed

        rank, _, dev = init_distributed(dev)
    if critic_output is not None:
        check_choice("--critic-output", critic_output, CRITIC_OUTPUTS, "critic output")
    check_choice("--keep", keep, ("last", "best"), "choice")
    check_choice("--record", record, ("full", "last"), "choice")
    if track_every is not None and track_every < 1:
        raise CommandError(f"--track-every must be >= 1 (steps between measurements), got {track_every}")
    if track_chains < 2:
        raise CommandError(f"--track-chains must be >= 2, got {track_chains}")
    track_every = track_every or 0
    if keep == "best" and not track_every:
        raise CommandError("--keep best keeps the states at the best tracked step: give --track-every N")
    if (features is None) != (reference is None):
        raise CommandError("--features and --reference go together (an extractor and the samples to compare with)")
    if classifier is not None and features is None:
        raise CommandError("--classifier (the Inception Score) is measured with --features and --reference")
    view_shape = parse_shape(data_shape) if data_shape else None
    g, u, shape, dataset = load_target(checkpoint, generator, critic, latent_shape, dev)
    if critic is not None:  # a model trained elsewhere (latentmcmc's own critics output energies)
        warn_critic_output(g, u, shape, critic_output, critic_sign, dev)
    quality = load_feature_quality(features, reference, classifier, g, shape, view_shape, dev) if features else None
    if track_every and quality is None and dataset is None:
        raise CommandError("--track-every needs quality metrics: a checkpoint that knows its data, or --features and "
                           "--reference")
    if not prior:
        warnings.filterwarnings("ignore", message=r"LatentEnergy\(prior=False\)")
        typer.echo("warning: --no-prior: the latent target can be improper (chains may drift where G extrapolates)",
                   err=True)
    has_warmup = warmup == "auto" or warmup > 0
    options = RefineOptions(
        num_chains=chains, sampler=sampler, steps=steps, warmup=warmup, adapt=adapt and has_warmup, thin=thin, seed=seed,
        beta=beta, prior=prior, critic_sign=critic_sign, critic_output=critic_output, block_size=block_size,
        record_blocks=record_blocks,
        superchains=superchains, max_warmup=max_warmup, until_rhat=until_rhat, min_ess=min_ess,
        monitor_every=monitor_every, data_shape=view_shape, track_every=track_every, track_chains=track_chains,
        track_metric=track_metric, keep=keep, resample=resample, record=record,
        keep_warmup=keep_warmup, stream=stream_draws, progress=progress_flag(quiet), device=dev, fuse=fuse_value,
    ).replace(eps=eps, schedule=schedule, compile=False if compile_mode == "off" else compile_mode,
              candidates=candidates, local_steps=local_steps, leapfrog_steps=leapfrog_steps, chees=chees,
              flow_lr=flow_lr)
    state_file = out / RESUME_FILE
    saving = {}
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
                      source=_source_digest(checkpoint, generator, critic))
    try:
        result = refine(g, u, shape, options, dataset=dataset, distributed=distributed, quality=quality, **saving)
        if result is None:  # a rank other than 0 of a torchrun job: rank 0 writes (main() then leaves the group)
            return
    except KeyboardInterrupt:
        kept = f"; the run state stays in {state_file}: rerun with --resume to continue" if saving else ""
        typer.echo(f"interrupted during warm-up: no outputs were written to {out}{kept}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.chains.num_draws == 0:
        typer.echo(f"interrupted before the first kept draw: nothing was written to {out}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    source = str(checkpoint) if checkpoint is not None else f"{generator} + {critic}"
    entry = SAMPLERS[sampler]
    target = entry.default_target_accept if entry.has_step_size else None
    try:
        write_report(result, out, figures=figures, target_accept=target if adapt and has_warmup else None,
                     run_file=run_file,
                     extra_metrics={"source": source, "latent_shape": list(shape), "device": str(dev)})
    except KeyboardInterrupt:
        typer.echo(f"interrupted while writing: {out} was left as it was", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if saving and not result.metrics.get("interrupted"):
        _finish_checkpoints(out, state_file, resume)
    elif saving:
        typer.echo(f"the run state stays in {state_file}: rerun the same command with --resume to continue", err=True)
    typer.echo(format_table(result.metrics))
    written = ["samples.npz"] + (["run.nc"] if run_file else []) + ["metrics.json"] + (
        ["quality.csv"] if result.tracking else []) + (["figures"] if figures else [])
    typer.echo(f"wrote {out}/ ({', '.join(written)})")
    exit_for(result.metrics)


RESUME_FILE = ".latentmcmc-resume.pt"
_RESUMED_AT: dict[str, str] = {}


def _where(state_file: Path) -> str:
    """Which block and step a run state was saved at (for resume.log)."""
    from ..samplers.resume import load_state

    try:
        blocks = load_state(state_file)["blocks"]
    except ValueError:
        return "a checkpoint"
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

