"""``latentmcmc train``: learn a critic U and a generator G with the energy-GAN objective."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..process_group import world_from_env
from ..training.data import DATASETS, SHAPE_RECIPES, check_data_argument
from ..training.entropy import ENTROPY_TERMS
from ..training.networks import ARCHITECTURES, CRITIC_NORMS
from .common import (
    CommandError,
    app,
    check_choice,
    check_device,
    described,
    flag,
    live_help,
    parse_shape,
    progress_flag,
    stop_interrupted,
)
from .declared import choices_text


def recipes() -> str:
    """Each data set's summary, recipe and what the recipe reached (from :data:`DATASETS`), for ``--help``."""
    def one(name, entry, batches: bool) -> str:  # batches: the file recipes differ in batch and critic steps
        r = entry.recipe
        batch = f", batch {r.batch_size}, critic steps {r.critic_steps}" if batches else ""
        return (f"{name} ({entry.summary}): {r.steps} steps, width {r.width}, lr {r.lr:g}{batch}, gradient penalty "
                f"{r.gp_weight:g}" + (f" -> {r.reaches}" if r.reaches else ""))

    files = "; ".join(one(name, entry, True) for name, entry in SHAPE_RECIPES.items())
    return "; ".join(one(name, entry, False) for name, entry in DATASETS.items()) + f". Or a file or folder: {files}"


@app.command("train")
def train_command(
    data: Optional[str] = live_help(typer.Option(None, show_default=False), lambda: (
        f"Built-in data set, or your samples (.npy/.npz: one array or one named x; IDX files; a folder of PNG/JPEG "
        f"images; uint8/uint16 pixels are scaled to [-1, 1], arrays read channels-first), with the recipe used for settings not given and what it reached here: "
        f"{recipes()}  \\[default: gaussians25]")),
    data_shape: Optional[str] = typer.Option(None, help="View each sample of --data PATH as this shape, e.g. 1,28,28 "
                                                        "(flat files)", show_default=False),
    holdout: Optional[float] = typer.Option(None, help="Share of --data PATH kept out of training, in [0, 0.5); "
                                                       "--features measures FD/KID against it along training  "
                                                       "\\[default: 0.1]", show_default=False),
    features: Optional[Path] = typer.Option(None, help="A feature extractor (torch.export, x -> (n, d)): FD, KID, "
                                                       "precision/recall and density/coverage of prior samples "
                                                       "against the held-out data along training (--data PATH)",
                                            show_default=False),
    arch: Optional[str] = typer.Option(None, help=f"Networks: {choices_text(ARCHITECTURES)}  \\[default: conv for "
                                                  "square images from files, else mlp]", show_default=False),
    entropy: Optional[str] = typer.Option(None, help=(
        f"Entropy term of G: {described(ENTROPY_TERMS)}  \\[default: the recipe's, "
        f"{', '.join(sorted({e.recipe.entropy for e in DATASETS.values()}))}]"), show_default=False),
    steps: Optional[int] = typer.Option(None, help="Generator steps in total (a resumed run counts its earlier "
                                                   "steps)  \\[default: the data set's recipe]", show_default=False),
    batch_size: Optional[int] = typer.Option(None, help="Batch size of data and latents  \\[default: recipe]",
                                             show_default=False),
    critic_steps: Optional[int] = typer.Option(None, help="Critic steps per generator step  \\[default: recipe]",
                                               show_default=False),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate of every network (betas 0.5, 0.9)  "
                                                  "\\[default: recipe]", show_default=False),
    width: Optional[int] = typer.Option(None, help="Hidden units per layer of every MLP (conv: channels of the first convolution)  "
                                                      "\\[default: recipe]",
                                        show_default=False),
    critic_norm: Optional[str] = typer.Option(None, help=f"Weight normalisation of a conv critic: "
                                                         f"{choices_text(CRITIC_NORMS)}  \\[default: none]",
                                              show_default=False),
    gp_weight: Optional[float] = typer.Option(None, help="Weight of the critic's gradient penalty  \\[default: recipe]",
                                              show_default=False),
    latent_dim: Optional[int] = typer.Option(None, help="Latent size  \\[default: 2 for 2-D data, 32 digits, 64 stacked digits; "
                                                              "files: 64 images, 32 other]",
                                             show_default=False),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    seed: Optional[int] = typer.Option(None, help="Seed of initialisation, batches and latents (and of the --data "
                                                  "PATH holdout)  \\[default: 0]", show_default=False),
    out: Path = typer.Option(..., help="Checkpoint file to write (atomically)."),
    checkpoint_every: int = typer.Option(500, help="Also write the checkpoint every this many steps (0: only at the end)."),
    resume: bool = flag(False, "--resume", help="Continue exactly from OUT if it exists (its config is used)."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train U and G on a built-in data set or your samples with the energy-GAN objective (Kumar et al. 2019).

    Settings not given follow the data set's recipe (listed under --data), which reached the stated
    quality in the stated time on 2 CPU cores. The progress bar shows the losses and, every max(50,
    steps // 20) steps, the data set's quality of prior samples (modes and HQ fraction, or FD); the
    checkpoint keeps that history and the last line sums it up.

    U minimises E_data[U(x)] - E_z[U(G(z))] + lambda E_data|grad_x U(x)|^2; G minimises
    E_z[U(G(z))] - I(X; Z). Ctrl-C stops; the last periodic checkpoint stays intact (--resume continues).
    Under torchrun (torchrun --nproc-per-node K -m latentmcmc train ...) the networks train with
    DistributedDataParallel, each rank on a 1/K slice of the global --batch-size; rank 0 writes OUT.
    """
    from ..output_lock import locked_output
    from ..training import TrainConfig, Trainer
    from ..training.trainer import describe_quality

    if data is not None:
        try:
            check_data_argument(data)
        except ValueError as err:
            raise CommandError(f"--data: {err}") from None
    if arch is not None:
        check_choice("--arch", arch, ARCHITECTURES, "architecture")
    if critic_norm is not None:
        check_choice("--critic-norm", critic_norm, CRITIC_NORMS, "critic normalisation")
    is_file = data is not None and data not in DATASETS
    for flag_name, value in (("--data-shape", data_shape), ("--features", features), ("--holdout", holdout)):
        if value is not None and not is_file and not (resume and data is None):  # resume: the checkpoint's data
            raise CommandError(f"{flag_name} applies to --data PATH (a file or folder of your samples)")
    if holdout is not None and not 0 <= holdout < 0.5:
        raise CommandError(f"--holdout must be in [0, 0.5), got {holdout}")
    if is_file:  # the checkpoint records where the data is, wherever the run is resumed from
        data = str(Path(data).resolve())
    view = parse_shape(data_shape, "--data-shape") if data_shape else None
    if entropy is not None:
        check_choice("--entropy", entropy, ENTROPY_TERMS, "entropy term")
    for name, value in (("steps", steps), ("batch-size", batch_size), ("critic-steps", critic_steps), ("width", width)):
        if value is not None and value < 1:
            raise CommandError(f"--{name} must be >= 1, got {value}")
    for name, value in (("lr", lr), ("gp-weight", gp_weight)):
        if value is not None and not (value >= 0 if name == "gp-weight" else value > 0):
            raise CommandError(f"--{name} must be {'>= 0' if name == 'gp-weight' else '> 0'}, got {value}")
    if checkpoint_every < 0:
        raise CommandError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    dev = check_device(device)
    if world_from_env() > 1:  # launched by torchrun: DistributedDataParallel over the ranks, rank 0 writes
        from ..process_group import init_distributed

        device = str(init_distributed(dev)[2])
    if out.exists() and out.is_dir():
        raise CommandError(f"--out {out} is a directory; give a file name such as {out}/ckpt.pt")
    if out.exists() and not resume:
        raise CommandError(f"{out} exists: --resume continues it; to start a new run there, delete it first or choose "
                           "another --out")
    resuming = resume and out.exists()
    if resume and not resuming:  # the same command starts a run and continues it (a scheduler's restarts)
        typer.echo(f"{out} does not exist yet: starting a new run there (--resume continues it from its checkpoints)",
                   err=True)
    if resuming:
        trainer = Trainer.resume(out, device=device, data=data if is_file else None)
        given = (("data", None if is_file else data), ("seed", seed), ("holdout", holdout), ("entropy", entropy), ("latent_dim", latent_dim), ("width", width), ("lr", lr),
                 ("critic_steps", critic_steps), ("batch_size", batch_size), ("gp_weight", gp_weight), ("arch", arch),
                 ("critic_norm", critic_norm),
                 ("data_view", view), ("features", None if features is None else str(features.resolve())))
        for name, value in given:
            kept = getattr(trainer.config, name)
            if value is not None and kept != value:
                raise CommandError(f"--{name.replace('_', '-')} {value} conflicts with the checkpoint's {kept!r}; "
                                   "a resumed run keeps its config")
        if steps is None and trainer.step >= trainer.recipe.steps:
            typer.echo(f"{out} has trained {trainer.step} steps, the recipe's {trainer.recipe.steps} or more: nothing "
                       "to do (give --steps to train further)")
            return
    else:
        config = TrainConfig(data=data or "gaussians25", entropy=entropy, latent_dim=latent_dim, width=width,
                             lr=lr, critic_steps=critic_steps, batch_size=batch_size, gp_weight=gp_weight,
                             seed=0 if seed is None else seed, device=device, arch=arch, data_view=view,
                             critic_norm=critic_norm or "none",
                             holdout=0.1 if holdout is None else holdout,
                             features=None if features is None else str(features.resolve()))
        trainer = Trainer(config)
    steps = trainer.recipe.steps if steps is None else steps
    if resuming:
        typer.echo(f"resuming {out} at step {trainer.step} of {steps}", err=True)
    if steps < trainer.step:
        raise CommandError(f"--steps {steps} is below the {trainer.step} steps {out} has already trained")
    _probe_writable(out)
    folder = out.parent if str(out.parent) else Path(".")
    with locked_output(folder, f".{out.name}.latentmcmc-lock", names=(out.name,), active=not trainer.rank):
        t0 = time.perf_counter()
        try:
            trainer.train(steps, out, checkpoint_every, progress=progress_flag(quiet))
        except KeyboardInterrupt:
            saved = (f"{out} holds the checkpoint of step {trainer.step - trainer.step % checkpoint_every}"
                     if checkpoint_every and trainer.step >= checkpoint_every else f"nothing was written to {out}")
            stop_interrupted(f"interrupted at step {trainer.step}: {saved}")
        if trainer.rank:
            return
        c = trainer.config
        quality = trainer.quality_history[-1] if trainer.quality_history else None
        recipe = trainer.recipe
        changed = "".join(f", {name.replace('_', ' ')} {getattr(c, name):g}"  # settings off the recipe, beside the
                          for name in ("batch_size", "critic_steps", "gp_weight")  # three always shown
                          if getattr(c, name) != getattr(recipe, name))
        if quality:
            against = f" against {trainer.dataset.held_out.shape[0]:,} held-out ones" if c.features else ""
            measured = (f"{describe_quality(quality)} ({'2,000' if len(c.data_shape) == 1 else '1,000'} prior "
                        f"samples{against})")
        elif c.data in DATASETS:
            measured = describe_quality(quality)
        else:  # a file trained without --features
            measured = ("not measured (give --features, an exported feature extractor, to follow FD and KID against "
                        "the held-out data)")
        arch = "" if c.data in DATASETS else f"{c.arch}, "  # files: the networks the shape chose
        if c.critic_norm != "none":
            arch += f"{c.critic_norm} norm, "
        typer.echo(f"trained {c.data} ({arch}{c.entropy}, width {c.width}, lr {c.lr:g}{changed}) to step "
                   f"{trainer.step} in {_duration(time.perf_counter() - t0)}: {measured}; wrote {out}")


def _duration(seconds: float) -> str:
    """``42 s`` under a minute, else ``5.1 min``."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _probe_writable(out: Path) -> None:
    """Fail before training if the checkpoint's folder cannot be written."""
    from ..report import check_writable

    check_writable(out.parent if str(out.parent) else Path("."))
