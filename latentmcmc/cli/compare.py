"""``latentmcmc compare``: refinement methods side by side on one model at an equal budget of model passes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ..methods import METHODS
from .common import (
    CommandError,
    app,
    check_device,
    choices,
    flag,
    parse_shape,
    progress_flag,
)
from .declared import derived_command, given_values, option_parameter, parameter
from .refine import (
    _CONDITIONS,
    _FEATURES,
    _MODEL,
    FixedCondition,
    load_feature_quality,
    load_target,
    read_condition,
    sampler_parameters,
    sampler_values,
    warn_critic_output,
)

_COMPARE_FIELDS = ("num_chains", "seed", "beta", "prior", "critic_output", "critic_sign", "data_shape")
_COMPARE_DEFAULTS = {"num_chains": 2000}


def _compare_parameters() -> list:
    from ..refinement.options import REFINE_OPTIONS

    run = [option_parameter(dataclasses.replace(REFINE_OPTIONS[name], default=_COMPARE_DEFAULTS.get(
        name, REFINE_OPTIONS[name].default), help=REFINE_OPTIONS[name].help.replace(
            "Number of chains (each starts from its own z ~ N(0, I)).", "Samples (chains) per method, all from the "
            "same prior draws."))) for name in _COMPARE_FIELDS]
    return [
        parameter("checkpoint", typer.Argument(None, help="A checkpoint written by 'latentmcmc train'.",
                                               show_default=False), Optional[Path]),
        parameter("methods", typer.Option(None, show_default=False, help=f"Comma-separated methods: {choices(METHODS)}"
                                          "  \\[default: all but langevin and annealed-langevin; flex2mcmc only with "
                                          "zuko installed]"), Optional[str]),
        parameter("budget", typer.Option(400, help="Forward+backward passes through the model per sample, for every "
                                                   "method."), int),
        *run,
        *sampler_parameters()[1:],  # the samplers' options (--sampler itself is --methods here)
        parameter("grid_points", typer.Option(801, help="2-D latents: grid points per axis of the exact target."), int),
        parameter("fit_critic", typer.Option(None, help="A generator without a critic: fit one on these real samples "
                                                        "(as 'latentmcmc fit-critic' does, defaults) and compare with "
                                                        "its logit; critic.pt2 and fit.json join the outputs",
                                             show_default=False), Optional[Path]),
        parameter("data_range", typer.Option(None, help="The generator's pixel range LO,HI (image files' bytes map to "
                                                        "it)  \\[default: read off its samples: 0,1 or -1,1]",
                                             show_default=False), Optional[str]),
        *_MODEL,
        *_CONDITIONS,
        *_FEATURES,
        parameter("device", typer.Option("cpu", help="cpu, cuda or cuda:N."), str),
        parameter("out", typer.Option(Path("compare"), help="Output directory: compare.json and compare.png."), Path),
        parameter("figures", flag(True, "--figures/--no-figures", help="Write compare.png."), bool),
        parameter("quiet", flag(False, "--quiet", "-q", help="No progress bar."), bool),
    ]


@derived_command(app, "compare", _compare_parameters)
def compare_command(**values) -> None:
    """Compare refinement methods on one model at an equal budget of model passes per sample.

    Samplers get as many steps as the budget buys, half of them warm-up. Prints one line per method: the data set's quality metrics (when the checkpoint knows its data),
    for a 2-D latent the total-variation distance to the exact target (grid integration) beside the
    noise floor of exact sampling, acceptance, the global jump rate, ESS per 1,000 passes, passes
    spent and seconds. Writes compare.json and compare.png into OUT.
    """
    from ..compare import compare, comparison_figure, comparison_table, default_methods
    from ..output_lock import locked_output
    from ..refinement.options import REFINE_OPTIONS
    from ..report import check_writable, staged_outputs, write_json
    from ..samplers.registry import SamplerOptions

    v = values
    methods = v["methods"]
    names = list(default_methods()) if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise CommandError(f"unknown method(s) {', '.join(unknown) or repr(methods)} for --methods; choose from "
                           f"{choices(METHODS)}")
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise CommandError(f"--methods names {', '.join(repeated)} more than once (each method runs once)")
    for name, value, low in (("budget", v["budget"], 4), ("grid-points", v["grid_points"], 11)):
        if value < low:
            raise CommandError(f"--{name} must be >= {low}, got {value}")
    run = {**{k: REFINE_OPTIONS[k].default for k in _COMPARE_FIELDS}, **_COMPARE_DEFAULTS,
           **given_values(v, {name: REFINE_OPTIONS[name] for name in _COMPARE_FIELDS})}
    if run["num_chains"] < 2:
        raise CommandError(f"--chains must be >= 2, got {run['num_chains']}")
    from ..energy import resolve_critic_output

    resolve_critic_output(run["critic_sign"], run["critic_output"])  # the two spellings must agree
    given = sampler_values(v)
    from ..samplers.registry import SAMPLERS, declared_options

    for option in given:  # an option no chosen sampler takes has no effect: say so, as refine does
        if v.get(option) is None:  # not on the command line: its command-line default, nothing to warn about
            continue
        if not any(option in SAMPLERS[m].options for m in names if m in SAMPLERS):
            typer.echo(f"warning: {declared_options()[option].flag} applies to none of the methods compared; ignored",
                       err=True)
    options = SamplerOptions(**given)
    dev = check_device(v["device"])
    out = v["out"]
    check_writable(out)
    from .fit_critic import parse_range, read_real

    value_range = parse_range(v["data_range"])
    if v["fit_critic"] is not None and (v["critic"] is not None or v["checkpoint"] is not None):
        raise CommandError("--fit-critic fits the critic: give --generator and --latent-shape, without --critic or a "
                           "checkpoint")
    fitted = calibration = None
    condition = read_condition(v, run["num_chains"])
    if condition is not None and v["fit_critic"] is not None:
        raise CommandError("--fit-critic fits an unconditional critic: it does not go with --classes or --condition")
    with locked_output(out):  # one run at a time into OUT; a killed run's leftovers go
        if v["fit_critic"] is not None:
            from ..fit_critic import fit_critic

            if v["generator"] is None or not v["latent_shape"]:
                raise CommandError("--fit-critic needs --generator g.pt2 and --latent-shape")
            from ..io.torch_export import load_exported

            shape = parse_shape(v["latent_shape"])
            g = load_exported(v["generator"], dev, name=f"generator {v['generator']}")
            real, value_range, _ = read_real(v["fit_critic"], g, shape, run["data_shape"], value_range, dev,
                                          what="--fit-critic")
            fitted = fit_critic(g, real, shape, data_shape=run["data_shape"], seed=run["seed"], device=dev,
                                prior=run.get("prior", True),
                                progress=progress_flag(v["quiet"]))
            u, dataset, run["critic_output"], run["critic_sign"] = fitted.critic, None, "logit", 1.0
            scaling = fitted.report["platt_scaling"]  # fitted on the held-out samples, not those the critic learnt
            if scaling is not None:
                from ..calibration import Calibration

                calibration = Calibration(scaling["slope"], scaling["intercept"], fitted=True)
            held = fitted.report["held_out"]
            typer.echo(f"fitted a critic on {v['fit_critic']}: held-out accuracy {held['accuracy']:.3f}, log-loss "
                       f"{held['log_loss']:.3f} at step {fitted.report['step']}", err=True)
        else:
            g, u, shape, dataset = load_target(v["checkpoint"], v["generator"], v["critic"], v["latent_shape"], dev,
                                               condition)
        conditioned = g if condition is None else FixedCondition(g, condition)  # what probes of G's output call
        if v["critic"] is not None and condition is None:  # a model trained elsewhere (latentmcmc's own critics output energies)
            warn_critic_output(g, u, shape, run["critic_output"], run["critic_sign"], dev)
        features, reference = v["features"], v["reference"]
        if (features is None) != (reference is None):
            raise CommandError("--features and --reference go together (an extractor and the samples to compare with)")
        quality = (load_feature_quality(features, reference, v["classifier"], conditioned, shape, run["data_shape"], dev,
                                        value_range) if features else None)
        result = compare(g, u, shape, names, budget=v["budget"], beta=run["beta"], num_chains=run["num_chains"],
                         seed=run["seed"], dataset=dataset, critic_sign=run["critic_sign"],
                         critic_output=run["critic_output"], device=dev, quality=quality, data_shape=run["data_shape"],
                         grid_points=v["grid_points"], sampler_options=options, progress=progress_flag(v["quiet"]),
                         prior=run.get("prior", True), condition=condition, calibration=calibration)
        critic_source = f"a critic fitted on {v['fit_critic']}" if fitted is not None else v["critic"]
        source = str(v["checkpoint"]) if v["checkpoint"] is not None else f"{v['generator']} + {critic_source}"
        with staged_outputs(out) as staging:
            write_json(staging / "compare.json", {"source": source, "settings": result.settings, "methods": result.rows})
            if v["figures"]:
                comparison_figure(result).savefig(staging / "compare.png", dpi=90)
            if fitted is not None:
                from ..fit_critic import export_critic

                export_critic(fitted.critic, real[:2].to(dev), staging / "critic.pt2")
                write_json(staging / "fit.json", {**fitted.report, "real": str(v["fit_critic"])})
        typer.echo(comparison_table(result))
        files = ["compare.json"] + (["compare.png"] if v["figures"] else []) + (["critic.pt2", "fit.json"]
                                                                                 if fitted is not None else [])
        typer.echo(f"wrote {out}/ ({', '.join(files)})")
