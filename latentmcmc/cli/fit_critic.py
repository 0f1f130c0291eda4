"""``latentmcmc fit-critic``: a critic for a generator that has none, fitted on real data; writes critic.pt2 and fit.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..datafiles import FORMATS
from ..priors import prior_spellings
from .common import CommandError, app, check_device, flag, parse_shape, progress_flag


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``--data-range LO,HI`` (e.g. ``0,1`` or ``-1,1``)."""
    if text is None:
        return None
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise CommandError(f"--data-range must be two numbers LO,HI such as 0,1 or -1,1, got {text!r}") from None
    if not lo < hi:
        raise CommandError(f"--data-range must have LO < HI, got {text!r}")
    return lo, hi


def read_real(path: Path, generator, latent_shape, view_shape, value_range, device, what: str = "--real"):
    """``(samples, value range, warning or None)``: the real samples in ``path`` (any file :mod:`latentmcmc.datafiles`
    reads) in the generator's output shape and value range, and :func:`range_mismatch`'s warning (also printed); a
    CommandError names the file or the two shapes."""
    import torch

    from ..datafiles import DataFileError, fit_to, output_range, read_data
    from ..io.torch_export import latent_mismatch

    if getattr(generator, "inputs", 1) > 1:  # an exported G(z, c)
        raise CommandError(f"the generator takes {generator.inputs} inputs (a conditional G(z, c)); fit-critic fits "
                           "critics of unconditional generators only")
    with torch.no_grad():
        try:
            sample = generator(torch.randn(64, *latent_shape, generator=torch.Generator().manual_seed(0)).to(device))
        except Exception as err:  # an exported program's shape guard, a layer's size mismatch
            raise CommandError(latent_mismatch(generator, latent_shape, err)) from None
    shape = tuple(view_shape) if view_shape else tuple(sample.shape[1:])
    known = value_range or output_range(sample)  # None: the generator's samples keep to no fixed pixel range
    value_range = known or (0.0, 1.0)
    try:
        data = fit_to(read_data(path, value_range), shape, f"{what} {path}")
    except DataFileError as err:
        raise CommandError(str(err)) from None
    note = range_mismatch(data, sample, known, f"{what} {path}")
    if note is not None:
        typer.echo(f"warning: {note}", err=True)
    return data, value_range, note


def range_mismatch(data, sample, value_range, what: str) -> str | None:
    """A warning when the data's range is not the generator's: beyond its pixel range by more than 5% of it, or
    with an end more than a quarter of that range from where the generator's samples end ([0, 1] data beside a
    tanh generator); None when they agree or the generator keeps to no known range."""
    if value_range is None:
        return None
    lo, hi = float(data.min()), float(data.max())
    g_lo, g_hi = float(sample.min()), float(sample.max())
    width = value_range[1] - value_range[0]
    outside = lo < value_range[0] - 0.05 * width or hi > value_range[1] + 0.05 * width
    if not outside and abs(lo - g_lo) <= 0.25 * width and abs(hi - g_hi) <= 0.25 * width:
        return None
    return (f"{what} spans [{lo:.3g}, {hi:.3g}] but the generator's samples [{g_lo:.3g}, {g_hi:.3g}] (pixel range "
            f"[{value_range[0]:g}, {value_range[1]:g}]): a critic tells them apart by their range alone; rescale the "
            "data to the generator's range (image files and integer pixels are mapped to it)")


@app.command("fit-critic")
def fit_critic_command(
    generator: Path = typer.Option(..., help="The generator, saved with torch.export.save (.pt2)."),
    latent_shape: str = typer.Option(..., help="Its latent shape, e.g. 128 or 4,4,8."),
    prior: str = typer.Option("normal", help=f"Its latent prior: {prior_spellings()}."),
    real: Path = typer.Option(..., help=f"Real samples: {FORMATS}."),
    out: Path = typer.Option(..., help="Output directory: critic.pt2 (logits, higher = more real) and fit.json."),
    data_shape: Optional[str] = typer.Option(None, help="View the samples as this shape, e.g. 1,28,28  "
                                                        "\\[default: the generator's output shape]",
                                             show_default=False),
    data_range: Optional[str] = typer.Option(None, help="The generator's pixel range, LO,HI: image files' bytes are "
                                                        "mapped to it  \\[default: read off the generator's samples: "
                                                        "0,1 or -1,1]", show_default=False),
    features: Optional[Path] = typer.Option(None, help="A feature extractor (torch.export, x -> (n, d)): fit a small "
                                                       "head on its frozen features instead of a whole network",
                                            show_default=False),
    init: Optional[Path] = typer.Option(None, help="An existing discriminator (torch.export) to fine-tune instead",
                                        show_default=False),
    init_output: str = typer.Option("probability", help="What --init outputs: probability, logit or energy."),
    steps: int = typer.Option(2000, min=1, help="The most gradient steps (early stopping on the held-out log-loss may end "
                                         "sooner)."),
    holdout: float = typer.Option(0.2, help="Share of the real samples held out for early stopping and the report."),
    penalty: float = typer.Option(0.0, min=0.0, help="Weight of a zero-centred gradient penalty on real data (R1)."),
    spectral_norm: Optional[bool] = flag(None, "--spectral-norm/--no-spectral-norm",
                                         help="Spectral norm in the default network  \\[default: on for images, off "
                                              "for flat data]", show_default=False),
    calibrate: bool = flag(False, "--calibrate/--no-calibrate",
                           help="Apply the Platt scaling of the logit fitted on the held-out samples (its slope is "
                                "reported either way)."),
    seed: int = typer.Option(0, help="Seed of the split, the generated samples and the initialisation."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    quiet: bool = flag(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fit a critic for a generator that has none: a discriminator of real data against G(z), z ~ the prior.

    Its logit estimates log p_data(x) - log p_G(x), so refine --critic OUT/critic.pt2 --critic-output logit
    targets the data distribution pulled back to latent space (beta 1). A held-out part of the data stops
    the fit early and measures it (accuracy, log-loss, calibration error, in fit.json and the last line).
    A critic that separates real from generated almost perfectly is warned about: refinement can exploit it.
    """
    from ..fit_critic import check_holdout, export_critic, fit_critic
    from ..io.torch_export import first_line, load_exported
    from ..output_lock import locked_output
    from ..report import check_writable, staged_outputs, write_json

    if init is not None and features is not None:
        raise CommandError("give --init (fine-tune a discriminator) or --features (a head on features), not both")
    try:
        check_holdout(holdout, "--holdout")
    except ValueError as err:
        raise CommandError(str(err)) from None
    if init_output not in ("probability", "logit", "energy"):
        raise CommandError(f"--init-output must be probability, logit or energy, got {init_output!r}")
    if init is None and init_output != "probability":
        typer.echo("warning: --init-output applies only with --init; ignored", err=True)
    from ..priors import check_prior

    try:
        prior_value = check_prior(prior)
    except ValueError as err:
        raise CommandError(f"--prior {err}") from None
    if prior_value is False:
        raise CommandError("--prior none names no distribution to draw the generator's latents from: give its prior")
    dev = check_device(device)
    shape, view = parse_shape(latent_shape), parse_shape(data_shape, "--data-shape") if data_shape else None
    value_range = parse_range(data_range)
    check_writable(out)
    g = load_exported(generator, dev, name=f"generator {generator}")
    samples, value_range, range_note = read_real(real, g, shape, view, value_range, dev)
    extractor = load_exported(features, dev, name=f"feature extractor {features}") if features else None
    start = load_exported(init, dev, name=f"discriminator {init}") if init else None
    import torch

    for flag_name, path, module in (("--features", features, extractor), ("--init", init, start)):
        if module is not None:
            try:
                with torch.no_grad():
                    module(samples[:2].to(dev))
            except Exception as err:
                raise CommandError(f"{flag_name} {path} does not take samples of shape {tuple(samples.shape[1:])}: "
                                   f"{first_line(err)}") from None
    with locked_output(out):
        fitted = fit_critic(g, samples, shape, data_shape=view, features=extractor, init=start, init_output=init_output,
                            steps=steps, seed=seed, holdout=holdout, penalty=penalty, normalized=spectral_norm,
                            calibrate=calibrate, device=dev, progress=progress_flag(quiet), prior=prior_value)
        report = {**fitted.report, "generator": str(generator), "real": str(real), "data_range": list(value_range)}
        if range_note is not None:
            report["warnings"] = [range_note, *report["warnings"]]
        with staged_outputs(out) as staging:
            export_critic(fitted.critic, samples[:2].to(dev), staging / "critic.pt2")
            write_json(staging / "fit.json", report)
    held = report["held_out"]
    typer.echo(f"fitted a critic ({report['critic']}, {report['parameters']:,} parameters) in {report['seconds']:.0f} s: "
               f"held-out accuracy {held['accuracy']:.3f} +- {held['accuracy_stderr']:.3f} ({held['real']:,} real and "
               f"{held['generated']:,} generated), log-loss {held['log_loss']:.3f}, calibration error "
               f"{held['calibration_error']:.3f} at step {report['step']}"
               + (f", Platt slope {scaling['slope']:.2f}" + (" (applied)" if scaling["applied"] else "")
                  if (scaling := report["platt_scaling"]) else "")
               + (f" (stopped early at {report['steps_run']})" if report["early_stopped"] else "")
               + (f" (the given discriminator: accuracy {first['accuracy']:.3f}, log-loss {first['log_loss']:.3f})"
                  if (first := report["held_out_at_start"]) and init is not None else "")
               + f"; wrote {out}/critic.pt2 and fit.json")
