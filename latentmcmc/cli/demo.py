"""``latentmcmc demo``: refine the shipped 25-Gaussians model and write the report; no arguments needed."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import (
    CommandError,
    app,
    check_device,
    exit_for,
    flag,
    progress_flag,
    stop_interrupted,
)


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("latentmcmc-demo"), help="Output directory of the report."),
    chains: int = typer.Option(2000, help="Number of chains."),
    steps: int = typer.Option(300, help="Recorded MALA steps per chain."),
    warmup: int = typer.Option(200, help="Warm-up steps (step-size adaptation)."),
    beta: float = typer.Option(3.0, help="Inverse temperature on the critic (higher: sharper, fewer modes)."),
    train_steps: int = typer.Option(0, help="Train a fresh model for this many generator steps instead of using "
                                            "the shipped one (0: shipped)."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Refine a small energy-GAN trained on 25 Gaussians with latent MALA; write and print the report.

    Prints acceptance, ESS, R-hat and the sample quality (high-quality fraction, modes covered, KL of
    the mode histogram to uniform) before and after refinement; writes samples, run, metrics and
    figures into OUT, as 'latentmcmc refine' does.
    """
    from ..demo import demo_checkpoint
    from ..output_lock import locked_output
    from ..refinement import RefineOptions, refine
    from ..report import check_writable, format_table, write_report
    from ..training import Trainer, load_dataset

    for name, value, low in (("chains", chains, 1), ("steps", steps, 1), ("warmup", warmup, 1), ("train-steps", train_steps, 0)):
        if value < low:
            raise CommandError(f"--{name} must be >= {low}, got {value}")
    dev = check_device(device)
    check_writable(out)
    with locked_output(out):  # one run at a time into OUT
        t0 = time.perf_counter()
        try:
            if train_steps:
                trainer = Trainer({"data": "gaussians25", "width": 256, "seed": seed, "device": str(dev)})
                trainer.train(train_steps, progress=progress_flag(quiet))
                g, u = trainer.generator.eval(), trainer.critic.eval()
                source = f"trained here for {train_steps} steps"
            else:
                from ..checkpoint import load_models

                g, u, _ = load_models(demo_checkpoint(), dev)
                source = f"shipped checkpoint {demo_checkpoint().name}"
            options = RefineOptions(num_chains=chains, sampler="mala", steps=steps, warmup=warmup, beta=beta, seed=seed,
                                    progress=progress_flag(quiet), device=dev, keep_warmup=True).replace(eps=0.01)
            result = refine(g, u, (2,), options, dataset=load_dataset("gaussians25"))
            write_report(result, out, target_accept=0.574, extra_metrics={"source": source, "device": str(dev)})
        except KeyboardInterrupt:
            stop_interrupted(f"interrupted: {out} was left as it was")
        typer.echo(f"latentmcmc demo: MALA in the latent space of an energy-GAN on 25 Gaussians ({source}), "
                   f"beta {beta}, {time.perf_counter() - t0:.1f} s in all on {dev}")
        typer.echo(format_table(result.metrics))
        typer.echo(f"wrote {out}/ (samples.png, energy.png, acceptance.png, metrics.json, samples.npz, run.nc)")
    exit_for(result.metrics)
