"""``latentmcmc diagnose``: the ArviZ-style summary of a saved run, and its figures."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import CommandError, app


@app.command("diagnose")
def diagnose_command(
    run: Path = typer.Argument(..., help="A saved run: run.nc (or a .zarr store) written by 'latentmcmc refine'.",
                               show_default=False),
    max_rows: int = typer.Option(20, help="Rows of the summary table (energy first, then latent coordinates)."),
    plots: Optional[Path] = typer.Option(None, help="Write energy, acceptance, trace and rank figures into this folder."),
) -> None:
    """Print the summary of a saved run: mean, sd, HDI, MCSE, ESS bulk/tail and R-hat per quantity.

    R-hat is the rank-normalised split R-hat (Vehtari et al. 2021); values above 1.01 mean the chains
    have not mixed (for latent refinement, often because each chain stays in its mode).
    """
    import pandas as pd

    from ..chains import Chains
    from ..diagnostics import acceptance_summary, summary

    if not run.exists():
        raise CommandError(f"no saved run at {run}")
    if run.is_dir() and run.suffix != ".zarr":
        hint = f" (the run of 'latentmcmc refine' is {run / 'run.nc'})" if (run / "run.nc").exists() else ""
        raise CommandError(f"{run} is a directory, not a saved run: give run.nc or a .zarr store{hint}")
    try:
        chains = Chains.load(run)
    except (OSError, ValueError, KeyError) as err:
        raise CommandError(f"{run} is not a run saved by latentmcmc (a run.nc NetCDF file or a .zarr store)") from err
    if max_rows < 1:
        raise CommandError(f"--max-rows must be >= 1, got {max_rows}")
    acc = acceptance_summary(chains)
    typer.echo(f"{run}: {chains.sampler}, {chains.num_chains} chain{'s' if chains.num_chains != 1 else ''} x "
               f"{chains.num_draws} draws "
               f"(warm-up {chains.warmup}, thin {chains.thin}), latent shape {chains.latent_shape}")
    line = f"acceptance {acc.mean:.3f}, divergences {acc.divergences}, eps mean {float(chains.eps.mean()):.4g}"
    if acc.frozen:
        line += f", frozen chains {acc.frozen}"
    typer.echo(line)
    stuck = int(chains.stuck().sum())
    if stuck == chains.num_chains:  # (stuck() counts none with fewer than two draws)
        typer.echo(f"(no chain moved in its {chains.num_draws} draws: every proposal was rejected, so there is no ESS "
                   "or R-hat to give; lower eps or let warm-up adapt it)")
    elif stuck:
        typer.echo(f"({stuck} of {chains.num_chains} chains never moved in their draws)")
    if chains.num_draws < 4:
        typer.echo("(fewer than 4 draws per chain: no ESS or R-hat)")
    elif stuck < chains.num_chains:
        table = summary(chains, max_rows=max_rows)
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            typer.echo(table.to_string(float_format=lambda v: f"{v:.3f}"))
        if chains.num_chains < 2:
            typer.echo("(one chain: R-hat compares chains, so it is NaN)")
        if table.attrs.get("omitted"):
            typer.echo(f"... {table.attrs['omitted']} more rows (--max-rows)")
    if plots is not None:
        written = write_diagnostic_figures(chains, plots)
        typer.echo(f"wrote {', '.join(str(p) for p in written)}")


def write_diagnostic_figures(chains, folder: Path) -> list[Path]:
    """energy.png, acceptance.png, and ArviZ trace and rank plots of the energy and first coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    from ..plots import acceptance_figure, energy_trace_figure
    from ..report import check_writable

    check_writable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in (("energy.png", energy_trace_figure(chains)), ("acceptance.png", acceptance_figure(chains))):
        fig.savefig(folder / name, dpi=110)
        written.append(folder / name)
    written += _arviz_figures(chains, folder)
    return written


def _arviz_figures(chains, folder: Path) -> list[Path]:
    """ArviZ trace and rank plots of the first 8 chains and first 4 latent coordinates.

    ArviZ 0.x: ``az.plot_trace``/``az.plot_rank``; ArviZ 1.x: ``arviz_plots`` (skipped if not installed).
    """
    import warnings

    import matplotlib.pyplot as plt

    from ..io.arviz import installed_arviz_kind

    data = chains.to_inference_data()
    keep = {"chain": slice(0, 8)}
    for k in range(len(chains.latent_shape)):
        keep[f"z_dim_{k}"] = slice(0, 4 if k == 0 else 1)
    data = data.isel(**keep)
    shown = min(8, chains.num_chains)
    coords = min(4, chains.latent_shape[0]) if chains.latent_shape else 1
    rest = ",0" * (len(chains.latent_shape) - 1)
    names = [f"z[{i}{rest}]" for i in range(coords)]  # as the summary table names them
    which = (f"the first {shown} of {chains.num_chains} chains" if shown < chains.num_chains
             else f"all {shown} chains") + f", latent coordinates {names[0]}..{names[-1]}"
    titles = {"trace.png": f"{which}: density per chain (left), draws (right); a row per coordinate, colour: chain",
              "rank.png": f"{which}: ranks among these chains' draws (uniform bars: the chains agree)"}
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if installed_arviz_kind() == "inference_data":
            import arviz as az

            for name, plot in (("trace.png", lambda d, **kw: az.plot_trace(d, compact=False, **kw)),
                               ("rank.png", az.plot_rank)):
                axes = plot(data, var_names=["z"])
                fig = axes.flat[0].figure
                if name == "trace.png":
                    for i, row in enumerate(axes.reshape(-1, 2)):
                        for ax in row:
                            ax.set_title(names[i], fontsize="medium")  # one line (ArviZ's "z\n0" ran into the row above)
                        row[0].set_xlabel("z")
                        row[0].set_ylabel("density")
                        row[1].set_xlabel("draw")
                        row[1].set_ylabel("z")
                else:
                    for i, ax in enumerate(axes.flat):
                        ax.set_title(names[i], fontsize="medium")  # ArviZ's two-line "z\n0, 0, 0" met the title
                        ax.set_xlabel("rank among the draws of the chains shown")  # ArviZ: "Rank (all chains)"
                fig.tight_layout()
                fig.suptitle(titles[name], fontsize="medium", y=1.03 if name == "trace.png" else 1.06)
                fig.savefig(folder / name, dpi=90, bbox_inches="tight")
                plt.close(fig)
                written.append(folder / name)
        else:
            try:
                import arviz_plots as azp
            except ImportError:
                return written
            for name, plot in (("trace.png", azp.plot_trace_dist), ("rank.png", azp.plot_rank)):
                collection = plot(data, var_names=["z"], backend="matplotlib")
                try:  # the figure behind arviz-plots' collection (its layout has changed between releases)
                    collection.viz["chart"].item().suptitle(titles[name], fontsize="medium")
                except Exception:  # noqa: BLE001 - a title is not worth failing for
                    pass
                collection.savefig(folder / name)
                written.append(folder / name)
    return written
