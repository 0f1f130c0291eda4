"""``latentmcmc compare``: refinement methods side by side on one model at an equal budget of model passes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..critics import CRITIC_OUTPUTS
from ..methods import METHODS
from .common import (
    CommandError,
    app,
    check_choice,
    check_device,
    choices,
    critic_output_option,
    critic_sign_option,
    flag,
    live_help,
    progress_flag,
)


@app.command("compare")
def compare_command(
    checkpoint: Optional[Path] = typer.Argument(None, help="A checkpoint written by 'latentmcmc train'.",
                                                show_default=False),
    methods: Optional[str] = live_help(typer.Option(None, show_default=False),
                                       lambda: f"Comma-separated methods: {choices(METHODS)}  \\[default: all but "
                                               "langevin and annealed-langevin; flex2mcmc only with zuko installed]"),
    budget: int = typer.Option(400, help="Forward+backward passes through the model per sample, for every method."),
    beta: float = typer.Option(1.0, help="Inverse temperature on the critic: E(z) = beta U(G(z)) + 0.5|z|^2."),
    chains: int = typer.Option(2000, help="Samples (chains) per method, all from the same prior draws."),
    seed: int = typer.Option(0, help="Seed of the prior draws and of every method."),
    generator: Optional[Path] = typer.Option(None, help="Generator saved with torch.export.save (.pt2)."),
    critic: Optional[Path] = typer.Option(None, help="Critic saved with torch.export.save (.pt2)."),
    latent_shape: Optional[str] = typer.Option(None, help="Latent shape, e.g. 128 (needed with --generator)."),
    critic_output: Optional[str] = critic_output_option(),
    critic_sign: float = critic_sign_option(),
    eps: float = typer.Option(0.01, help="Starting step size of the samplers (adapted in their warm-up)."),
    candidates: int = typer.Option(10, help="isir, ex2mcmc, flex2mcmc: points per global move."),
    local_steps: int = typer.Option(3, help="ex2mcmc, flex2mcmc: MALA steps after each global move."),
    leapfrog_steps: int = typer.Option(10, help="hmc: leapfrog steps per trajectory."),
    grid_points: int = typer.Option(801, help="2-D latents: grid points per axis of the exact target."),
    data_shape: Optional[str] = typer.Option(None, help="View the generator's output as samples of this shape, e.g. "
                                                         "1,28,28  \\[default: as output]", show_default=False),
    features: Optional[Path] = typer.Option(None, help="A feature extractor saved with torch.export: FD, KID, "
                                                       "precision/recall, density/coverage against --reference",
                                            show_default=False),
    reference: Optional[Path] = typer.Option(None, help="Reference samples (.npz) for --features", show_default=False),
    classifier: Optional[Path] = typer.Option(None, help="A classifier saved with torch.export for the Inception Score",
                                              show_default=False),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    out: Path = typer.Option(Path("compare"), help="Output directory: compare.json and compare.png."),
    figures: bool = flag(True, "--figures/--no-figures", help="Write compare.png."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Compare refinement methods on one model at an equal budget of model passes per sample.

    Samplers get as many steps as the budget buys, half of them warm-up. Prints one line per method: the data set's quality metrics (when the checkpoint knows its data),
    for a 2-D latent the total-variation distance to the exact target (grid integration) beside the
    noise floor of exact sampling, acceptance, the global jump rate, ESS per 1,000 passes, passes
    spent and seconds. Writes compare.json and compare.png into OUT.
    """
    from ..compare import compare, comparison_figure, comparison_table, default_methods
    from ..report import check_writable, staged_outputs, write_json
    from ..samplers.registry import SamplerOptions
    from .common import parse_shape
    from .refine import load_feature_quality, load_target, warn_critic_output

    names = list(default_methods()) if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise CommandError(f"unknown method(s) {', '.join(unknown) or repr(methods)} for --methods; choose from "
                           f"{choices(METHODS)}")
    for name, value, low in (("budget", budget, 4), ("chains", chains, 2), ("grid-points", grid_points, 11)):
        if value < low:
            raise CommandError(f"--{name} must be >= {low}, got {value}")
    if not eps > 0 or eps == float("inf"):
        raise CommandError(f"--eps must be a finite number > 0, got {eps}")
    if not beta >= 0 or beta == float("inf"):
        raise CommandError(f"--beta must be finite and >= 0, got {beta}")
    dev = check_device(device)
    check_writable(out)
    if critic_output is not None:
        check_choice("--critic-output", critic_output, CRITIC_OUTPUTS, "critic output")
    g, u, shape, dataset = load_target(checkpoint, generator, critic, latent_shape, dev)
    if critic is not None:  # a model trained elsewhere (latentmcmc's own critics output energies)
        warn_critic_output(g, u, shape, critic_output, critic_sign, dev)
    if (features is None) != (reference is None):
        raise CommandError("--features and --reference go together (an extractor and the samples to compare with)")
    view_shape = parse_shape(data_shape) if data_shape else None
    quality = load_feature_quality(features, reference, classifier, g, shape, view_shape, dev) if features else None
    options = SamplerOptions(eps=eps, candidates=candidates, local_steps=local_steps, leapfrog_steps=leapfrog_steps)
    result = compare(g, u, shape, names, budget=budget, beta=beta, num_chains=chains, seed=seed, dataset=dataset,
                     critic_sign=critic_sign, critic_output=critic_output, device=dev, quality=quality,
                     data_shape=view_shape, grid_points=grid_points, sampler_options=options,
                     progress=progress_flag(quiet))
    source = str(checkpoint) if checkpoint is not None else f"{generator} + {critic}"
    with staged_outputs(out) as staging:
        write_json(staging / "compare.json", {"source": source, "settings": result.settings, "methods": result.rows})
        if figures:
            comparison_figure(result).savefig(staging / "compare.png", dpi=90)
    typer.echo(comparison_table(result))
    typer.echo(f"wrote {out}/ (compare.json" + (", compare.png)" if figures else ")"))
