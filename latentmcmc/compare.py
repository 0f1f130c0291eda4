"""``latentmcmc compare``: refinement methods side by side on one model at an equal budget of model passes.

Every method starts from the same prior draws and spends about ``budget`` forward+backward passes per
sample (:mod:`latentmcmc.methods`).  Per method: the data set's quality metrics when known (HQ, modes,
KL; FD for digits), acceptance, the global jump rate, ESS of the energy per 1,000 passes (per chain,
recorded steps), passes spent and wall time.  For a 2-D latent the exact target ``exp(-E)`` is
integrated on a grid (:mod:`latentmcmc.exact`) and each method's distance to it is reported: the TV
distance of the mode weights (data sets with modes) or of a 20 x 20 latent histogram, beside the
noise floor of exact sampling with as many samples. A method within the floor cannot be told apart
from exact sampling; a method far above it only looks good.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .conditions import class_accuracy, class_ids, per_chain
from .exact import GridTarget, grid_target, total_variation, tv_noise_floor
from .methods import METHODS, MethodRun, Problem
from .priors import prior_name
from .refinement.blocks import prior_draws, stream_seeds
from .refinement.summary import generate_in_batches

__all__ = ["DEFAULT_METHODS", "Comparison", "compare", "comparison_table", "comparison_figure", "flows_available",
           "default_methods"]

DEFAULT_METHODS = ("prior", "truncation", "mala", "hmc", "isir", "ex2mcmc", "flex2mcmc", "annealed-mala", "mh-gan",
                   "drs", "dot")


def flows_available() -> bool:
    """Whether zuko (the flow library FlEx2MCMC uses) is installed."""
    import importlib.util

    return importlib.util.find_spec("zuko") is not None


def default_methods() -> tuple[str, ...]:
    """:data:`DEFAULT_METHODS`, without flex2mcmc when zuko is not installed."""
    return tuple(m for m in DEFAULT_METHODS if m != "flex2mcmc" or flows_available())


@dataclass
class Comparison:
    """One row per method (``rows[name]``: the numbers), the settings, and the exact target when computed."""

    rows: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    samples: dict[str, Tensor] = field(default_factory=dict)  # G(z) per method, for the figure
    reference: Tensor | None = None


def _bins(z: Tensor, half_width: float = 4.0, bins: int = 20) -> Tensor:
    """Index of the 20 x 20 latent cell of each 2-D point (one extra bin for points outside the box)."""
    cell = ((z.double() + half_width) / (2 * half_width) * bins).floor().long()
    inside = ((cell >= 0) & (cell < bins)).all(1)
    return torch.where(inside, cell[:, 0] * bins + cell[:, 1], torch.full_like(cell[:, 0], bins * bins))


class ExactReference:
    """The grid truth of a 2-D latent target, and each sample set's TV distance to it with its noise floor."""

    def __init__(self, problem: Problem, dataset, n: int, points_per_axis: int) -> None:
        self.grid: GridTarget = grid_target(problem.energy, points_per_axis=points_per_axis,
                                            device=next((p.device for p in problem.generator.parameters()), "cpu"))
        self.modes = dataset.modes if dataset is not None and dataset.modes is not None else None
        self.generator = problem.generator
        labels = self._labels(self.grid.points)
        self.k = self.modes.shape[0] if self.modes is not None else 401
        self.truth = torch.zeros(self.k, dtype=torch.float64).index_add_(0, labels, self.grid.probs)
        self.floor = tv_noise_floor(self.truth, n)
        self.kind = "mode weights" if self.modes is not None else "latent 20x20 histogram"

    @torch.no_grad()
    def _labels(self, z: Tensor) -> Tensor:
        if self.modes is None:
            return _bins(z.cpu())
        device = next((p.device for p in self.generator.parameters()), torch.device("cpu"))
        out = []
        for i in range(0, z.shape[0], 65536):
            x = self.generator(z[i:i + 65536].to(device)).double().cpu()
            out.append(torch.cdist(x, self.modes.double()).argmin(1))
        return torch.cat(out)

    def tv(self, z: Tensor) -> float:
        hist = torch.bincount(self._labels(z), minlength=self.k).double()
        return total_variation(hist, self.truth)


@torch.no_grad()
def _generate(energy, z: Tensor) -> Tensor:
    """``G(T(u), c)`` of chain states in batches of 65,536 (the chains' conditions sliced with them)."""
    return generate_in_batches(energy.generate, z, 65536, energy.condition)


def _row(name: str, run: MethodRun, problem: Problem, dataset, exact: ExactReference | None,
         quality: dict | None) -> dict[str, Any]:
    from .diagnostics import ess

    row: dict[str, Any] = {"method": name, "summary": METHODS[name].summary,
                           "passes": run.evaluations.passes, "forward": run.evaluations.forward,
                           "backward": run.evaluations.backward, "seconds": run.seconds, **run.notes}
    chains = run.chains
    if chains is not None:
        row["acceptance"] = float(chains.acceptance_rate.mean())
        if chains.jump_rate is not None:
            row["jump_rate"] = float(chains.jump_rate.mean())
        if bool(chains.stuck().all()):  # (never with fewer than two draws)
            row["stuck"] = True  # no ESS: every chain's draws are its start, whatever ArviZ's formula makes of them
        elif chains.num_draws >= 4 and chains.evaluations is not None:
            recorded_passes = run.evaluations.passes * chains.steps / max(1, chains.steps + chains.warmup)
            per_chain = float(ess(chains.energy)) / chains.num_chains
            row["ess_per_kpass"] = 1000.0 * per_chain / max(recorded_passes, 1e-9)
        if chains.log_weights is not None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row["importance_ess"] = chains.log_normalizer().importance_ess
    elif "acceptance" in run.notes:
        row["acceptance"] = run.notes["acceptance"]
    row["exact"] = bool(getattr(METHODS[name], "exact", False)) or (
        name == "mh-gan" and not problem.calibration.fitted)
    if quality:
        row["quality"] = quality
    if exact is not None:
        row["tv_to_exact"] = exact.tv(run.z)
    return row


def compare(generator: nn.Module, critic: nn.Module, latent_shape: tuple[int, ...], methods=DEFAULT_METHODS,
            budget: int = 400, beta: float = 1.0, num_chains: int = 2000, seed: int = 0, dataset=None,
            critic_sign: float = 1.0, critic_output: str | None = None, device: str | torch.device = "cpu",
            grid_points: int = 801,
            sampler_options=None, progress=None, quality=None, data_shape: tuple[int, ...] | None = None,
            prior=True, condition=None, real: Tensor | None = None, calibration=None) -> Comparison:
    """Run ``methods`` (names of :data:`~latentmcmc.methods.METHODS`) on one model; see the module docstring.

    ``prior`` is :class:`~latentmcmc.LatentEnergy`'s (a name such as ``"uniform:-1,1"`` or a distribution):
    every method starts from and proposes with its draws.  Under a prior where the truncation trick
    means nothing (not centred on 0) the default methods leave ``truncation`` out and naming it is an
    error; the 2-D grid reference is computed for the N(0, I) prior only.  ``condition`` (one row per
    chain) refines a class-conditional model (``G(z, c)``, ``D(x, c)``) for every condition at once; its
    MH-GAN and DRS use the uncalibrated critic (real data comes without conditions), and with class ids
    and a classifier each row's quality gets ``class_acc``, the mean over classes of the share of a class's
    samples the classifier gives that class.

    ``quality`` (e.g. a :class:`~latentmcmc.feature_metrics.FeatureQuality`) replaces the data set's
    metrics; ``data_shape`` views the generator's outputs as samples of that shape.  ``real`` (samples of the
    data) calibrates the MH-GAN, DRS and DOT critic; by default the data set's samples or ``quality``'s reference.
    ``calibration`` (a :class:`~latentmcmc.calibration.Calibration` fitted elsewhere on held-out data, such as
    fit-critic's Platt scaling) is used as it is instead.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 4:
        raise ValueError(f"budget must be an integer >= 4 passes per sample, got {budget!r}")
    if "flex2mcmc" in methods and not flows_available():
        raise ValueError('method flex2mcmc needs the zuko flow library: pip install "latentmcmc[flows]" (or leave '
                         "flex2mcmc out of the methods)")
    from .samplers.registry import SamplerOptions

    device = torch.device(device)
    problem = Problem(generator, critic, tuple(latent_shape), beta=beta, critic_sign=critic_sign,
                      critic_output=critic_output,
                      real=real if real is not None else (dataset.x if dataset is not None
                                                          else getattr(quality, "reference", None)),
                      sampler_options=sampler_options or SamplerOptions(), prior=prior,
                      condition=per_chain(condition, num_chains, device), _calibration=calibration)
    latent_prior = problem.energy.latent_prior
    if latent_prior is not None and not latent_prior.truncates and "truncation" in methods:
        if tuple(methods) != DEFAULT_METHODS:
            latent_prior.truncate(torch.zeros(1, *latent_shape), 0.7)  # raises, naming the prior
        warnings.warn(f"the truncation trick means nothing under the prior {latent_prior.name} (not centred on "
                      "0): compare leaves it out of its default methods", UserWarning, stacklevel=2)
        methods = tuple(m for m in methods if m != "truncation")
    start_seed, method_seed = stream_seeds(seed)
    z0 = prior_draws(num_chains, tuple(latent_shape), start_seed, device, prior=latent_prior)
    from .refinement import data_view

    view = data_view(problem.energy, tuple(latent_shape), data_shape, device) or (lambda x: x)
    measure = quality if quality is not None else (dataset.quality if dataset is not None else None)
    exact = None
    if tuple(latent_shape) == (2,) and (latent_prior is None or latent_prior.standard) and condition is None:
        exact = ExactReference(problem, dataset, num_chains, grid_points)
    rows, samples = {}, {}
    from .progress import progress_bar

    bar = progress_bar(len(methods), progress, "compare")
    for name in methods:
        if bar is not None:
            bar.set_postfix(method=name, refresh=True)
        run = METHODS[name].run(problem, z0, budget, method_seed)
        x = view(_generate(problem.energy, run.z))
        q = measure(x) if measure is not None else None
        rows[name] = _row(name, run, problem, dataset, exact, None if q is None else
                          {k: v for k, v in q.items() if k != "notes"})
        labels, classifier = class_ids(problem.condition), getattr(measure, "classifier", None)
        if labels is not None and classifier is not None and rows[name].get("quality") is not None:
            per_class = class_accuracy(classifier, x, labels)  # the mean over classes of each one's accuracy
            rows[name]["quality"]["class_acc"] = sum(v["accuracy"] for v in per_class.values()) / len(per_class)
        samples[name] = x.detach().cpu()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    settings = {"budget": budget, "beta": beta, "prior": prior_name(prior), "chains": num_chains,
                "conditions": None if problem.condition is None else int(torch.unique(problem.condition, dim=0).shape[0]), "seed": seed, "latent_shape": list(latent_shape),
                "calibrated": problem.calibration.fitted, "calibration_slope": problem.calibration.slope,
                "quality": getattr(quality, "name", None) or (dataset.name if dataset is not None else None)}
    if exact is not None:
        settings.update(exact_distance=exact.kind, exact_log_z=exact.grid.log_z, tv_floor_mean=exact.floor[0],
                        tv_floor_95=exact.floor[1])
    return Comparison(rows, settings, samples, None if dataset is None else dataset.x)


def _fmt(value: Any, width: int, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return f"{'n/a':>{width}}"
    if isinstance(value, int):
        return f"{value:>{width}d}"
    return f"{value:>{width}.{digits}f}"


def comparison_table(result: Comparison) -> str:
    """The printed table: one line per method."""
    s = result.settings
    rows = list(result.rows.values())
    metric_names = list(rows[0]["quality"]) if rows and rows[0].get("quality") else []
    head = f"{'method':<18}" + "".join(f"{m:>10}" for m in metric_names)
    if "exact_distance" in s:
        head += f"{'TV-exact':>9}"
    head += f"{'accept':>8}{'jump':>7}{'ESS/kpass':>10}{'passes':>8}{'seconds':>9}"
    lines = [f"budget {s['budget']} passes per sample, beta {s['beta']}, {s['chains']} chains, seed {s['seed']}"
             + (f"; {s['conditions']} conditions" if s.get("conditions") else "")
             + ("" if s["calibrated"] else "; MH-GAN/DRS/DOT use the uncalibrated critic ("
                + ("real data has no conditions)" if s.get("conditions") else "no real data)")), head]
    for r in rows:
        line = f"{r['method']:<18}" + "".join(_fmt(r["quality"].get(m), 10) for m in metric_names)
        if "exact_distance" in s:
            line += _fmt(r.get("tv_to_exact"), 9)
        line += _fmt(r.get("acceptance"), 8, 2) + _fmt(r.get("jump_rate"), 7, 2) + _fmt(r.get("ess_per_kpass"), 10, 1)
        line += _fmt(r["passes"], 8) + _fmt(r["seconds"], 9, 1)
        lines.append(line)
    notes = []
    few = [f"{r['method']} ({r['few_steps']} steps)" for r in rows if r.get("few_steps")]
    if few:
        notes.append(f"The budget buys few steps of {', '.join(few)}: adaptation has barely started and the passes "
                     "may exceed the budget (every sampler runs at least 4 steps); raise --budget.")
    stuck = [r["method"] for r in rows if r.get("stuck")]
    if stuck:
        notes.append(f"No chain of {', '.join(stuck)} moved in its recorded draws (every proposal rejected): no ESS; "
                     "its samples are its warm-up's last states.")
    if any(r.get("ess_per_kpass") is None and r.get("passes") and "acceptance" in r and not r.get("stuck") for r in rows):
        notes.append("ESS/kpass n/a: fewer than 4 recorded draws per chain, or not an MCMC method.")
    if any(r.get("weights_reliable") is False for r in rows):
        notes.append("Annealed methods marked unreliable have degenerate AIS weights: their resampled output rests on "
                     "a few chains.")
    lines += notes
    if "exact_distance" in s:
        lines.append(f"TV-exact: total-variation distance of the {s['exact_distance']} to the grid truth at beta "
                     f"{s['beta']}; exact sampling of {s['chains']} points gives {s['tv_floor_mean']:.3f} on average, "
                     f"{s['tv_floor_95']:.3f} at the 95th percentile.")
    return "\n".join(lines)


def _as_images(x: Tensor) -> Tensor | None:
    """Samples as ``(n, C, H, W)`` images for a picture: images as they are, flat square ones as grey squares."""
    if x.dim() == 4 and x.shape[1] in (1, 3):
        return x
    from .plots import square_side

    side = square_side(x.shape[1]) if x.dim() == 2 else None
    return None if side is None else x.reshape(-1, 1, side, side)


def comparison_figure(result: Comparison):
    """``compare.png``: bars of the headline metric, TV to the exact target, ESS per 1,000 passes; 2-D samples."""
    from matplotlib.figure import Figure

    rows = list(result.rows.values())
    names = [r["method"] for r in rows]
    two_d = all(x.dim() == 2 and x.shape[1] == 2 for x in result.samples.values())
    panels = []
    if rows and rows[0].get("quality"):
        from .feature_metrics import METRIC_DIRECTIONS, headline_metric

        key = headline_metric({k: 0 for k in rows[0]["quality"]})
        if key:
            better = f" ({METRIC_DIRECTIONS.get(key, 'higher')} is better)"
            panels.append((key + better, [r["quality"][key] for r in rows], None))
    if "exact_distance" in result.settings:
        panels.append((f"TV to exact ({result.settings['exact_distance']})", [r.get("tv_to_exact") for r in rows],
                       (result.settings["tv_floor_mean"], result.settings["tv_floor_95"])))
    panels.append(("ESS per 1,000 passes (energy)", [r.get("ess_per_kpass") for r in rows], None))
    images = {} if two_d else {name: _as_images(x) for name, x in result.samples.items()}
    if any(v is None for v in images.values()):
        images = {}  # flat samples that are not square images: no per-method picture
    n_scatter = len(rows) if (two_d or images) else 0
    cols = max(len(panels), 4) if n_scatter else len(panels)
    scatter_rows = math.ceil(n_scatter / cols)
    fig = Figure(figsize=(3.6 * cols, 3.6 * (1 + scatter_rows)), layout="constrained")
    grid = fig.add_gridspec(1 + scatter_rows, cols)
    for k, (title, values, floor) in enumerate(panels):
        ax = fig.add_subplot(grid[0, k])
        y = list(range(len(names)))
        ax.barh(y, [v if v is not None and math.isfinite(v) else 0.0 for v in values], color="C0")
        for k_row, v in enumerate(values):  # say where there is no number, rather than leave an empty row
            if v is None or not math.isfinite(v):
                ax.text(0.02, k_row, "n/a", transform=ax.get_yaxis_transform(), va="center", fontsize="small",
                        color="0.4")
        ax.set_yticks(y, names, fontsize="small")
        ax.invert_yaxis()
        if all(v is None or not math.isfinite(v) for v in values):
            ax.set_xticks([])  # no axis for numbers there are none of
        if floor:
            ax.axvspan(0, floor[1], color="C2", alpha=0.2, label=f"exact-sampling noise (95%: {floor[1]:.3f})")
            ax.legend(fontsize="x-small", loc="lower right")
        ax.set_title(title, fontsize="medium")
    s = result.settings
    ref = result.reference[:3000].cpu().numpy() if two_d and result.reference is not None else None
    fig.suptitle(f"budget {s['budget']} passes per sample, beta {s['beta']}, {s['chains']} chains" + (
        "\nbelow: each method's samples G(z) (red, up to 2,000)" + (" over the data (grey)" if ref is not None else "")
        if two_d else ("\nbelow: each method's first 16 samples G(z)" if images else "")))
    if images:
        from .datafiles import output_range
        from .plots import image_grid

        value_range = output_range(torch.cat([x[:16] for x in images.values()])) or (-1.0, 1.0)
        for k, (name, x) in enumerate(images.items()):
            ax = fig.add_subplot(grid[1 + k // cols, k % cols])
            ax.imshow(image_grid(x[:16], columns=4, value_range=value_range), cmap="gray", vmin=0, vmax=1)
            ax.set_title(name, fontsize="small")
            ax.axis("off")
    if two_d:
        for k, (name, x) in enumerate(result.samples.items()):
            ax = fig.add_subplot(grid[1 + k // cols, k % cols])
            if ref is not None and ref.shape[1] == 2:
                ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.75", rasterized=True)
            pts = x[:2000].numpy()
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, c="C3", rasterized=True)
            tv = result.rows[name].get("tv_to_exact")
            ax.set_title(name + (f" (TV {tv:.3f})" if tv is not None else ""), fontsize="small")
            ax.set_aspect("equal")
            ax.tick_params(labelsize="x-small")
            ax.set_xlabel("x[0]", fontsize="x-small")
            ax.set_ylabel("x[1]", fontsize="x-small")
    return fig
