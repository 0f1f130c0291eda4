"""Figures of a refinement run (matplotlib's object API: no global pyplot state, any backend).

* :func:`samples_figure`: samples before and after refinement (2-D scatter over the data, or image grids);
* :func:`energy_trace_figure`: ``E(z)`` along the chains (warm-up shaded when it was kept);
* :func:`acceptance_figure`: mean acceptance probability per step across chains, with its target.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .chains import Chains
from .feature_metrics import HEADLINE_METRICS

__all__ = ["samples_figure", "energy_trace_figure", "acceptance_figure", "image_grid", "quality_figure"]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def image_grid(images: Tensor, columns: int = 8, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Tile ``(n, C, H, W)`` images with pixels in ``value_range`` into one ``(rows H, columns W[, 3])`` array in [0, 1]."""
    lo, hi = value_range
    x = ((_np(images) - lo) / (hi - lo)).clip(0, 1)
    n, c, h, w = x.shape
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, c), dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, columns)
        canvas[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = x[k].transpose(1, 2, 0)
    return canvas[..., 0] if c == 1 else canvas


def square_side(n: int) -> int | None:
    """The side of a square of ``n`` pixels (flat samples shown as grey images), or None when ``n`` is no square of
    at least 4 x 4."""
    side = int(round(math.sqrt(n)))
    return side if side * side == n and side >= 4 else None


def samples_figure(before: Tensor, after: Tensor, reference: Tensor | None = None, title: str = "",
                   max_points: int = 5000, max_images: int = 64, quality: dict | None = None,
                   value_range: tuple[float, float] | None = None, prior: str = "normal",
                   classes: Tensor | None = None) -> Figure:
    """Before/after panels of the same latents: scatter plots for 2-D samples (data in grey behind, the
    quality numbers in the titles), image grids for ``(n, C, H, W)`` samples; flat samples whose size is
    a square are shown as square grey images, other flat samples as their first two principal components.
    ``prior`` names the latent prior (titles); ``classes`` (one class id per sample) puts one class per row
    of an image grid (up to 12 classes, 8 samples each)."""
    fig = Figure(figsize=(10, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    two_d = before.dim() == 2 and before.shape[1] == 2
    note = ""
    if before.dim() == 2 and not two_d:
        side = square_side(before.shape[1])
        if side is not None:
            before, after = before.reshape(-1, 1, side, side), after.reshape(-1, 1, side, side)
            note = f" (flat output shown as {side}x{side}; --data-shape sets the shape)"
        else:
            centre = before.double().mean(0)
            _, _, v = torch.pca_lowrank(before.double() - centre, q=2, center=False)
            before, after = (before.double() - centre) @ v, (after.double() - centre) @ v
            two_d, note = True, " (first two principal components of the prior samples)"
    model = "G(z)" if classes is None else "G(z, c)"
    titles = [f"prior samples {model}, z ~ {'N(0, I)' if prior == 'normal' else prior}", "after latent MCMC"]
    columns, row_labels = 8, None
    if classes is not None and before.dim() == 4:  # one row per class
        ks = torch.unique(classes.cpu())[:12]
        rows_of = [torch.nonzero(classes.cpu() == k).flatten() for k in ks]
        columns = max(1, min(8, min(len(r) for r in rows_of)))
        order = torch.cat([r[:columns] for r in rows_of])
        before, after, max_images = before[order.to(before.device)], after[order.to(after.device)], len(order)
        row_labels = [str(int(k)) for k in ks]
    if quality:
        for k, when in enumerate(("before", "after")):
            q = quality.get(when) or {}
            parts = [f"{name} {q[name]:.3g}" for name in HEADLINE_METRICS if q.get(name) is not None][:3]
            if parts:
                titles[k] += "\n" + ", ".join(parts).replace("hq_fraction", "HQ")
    for ax, x, name in zip(axes, (before, after), titles):
        if two_d:
            if reference is not None:
                ref = _np(reference[:max_points])
                ax.scatter(ref[:, 0], ref[:, 1], s=5, c="0.55", label="data", rasterized=True)
            pts = _np(x[:max_points])
            label = "samples"
            if reference is not None:  # keep both panels on the data's frame, and say what falls outside it
                lo, hi = _np(reference.min(0).values), _np(reference.max(0).values)
                pad = 0.15 * (hi - lo)
                lo, hi = lo - pad, hi + pad
                ax.set_xlim(lo[0], hi[0])
                ax.set_ylim(lo[1], hi[1])
                outside = int(((pts < lo) | (pts > hi)).any(1).sum())
                if outside:
                    label += f" ({outside} of {len(pts)} outside this frame)"
            ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.35, c="C0" if x is before else "C3",
                       label=label, rasterized=True)  # translucent: the data shows through where they overlap
            ax.set_aspect("equal")
            ax.set_xlabel("x[0]" if not note else "component 1")
            ax.set_ylabel("x[1]" if not note else "component 2")
            ax.legend(loc="best", markerscale=4, fontsize="small", framealpha=0.9)
        elif x.dim() == 4 and x.shape[1] in (1, 3):
            if value_range is None:  # read off the prior samples: a sigmoid output is drawn from 0, a tanh from -1
                from .datafiles import output_range

                value_range = output_range(before) or (-1.0, 1.0)
            grid = image_grid(x[:max_images], columns=columns, value_range=value_range)
            ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if row_labels is None:
                ax.axis("off")
            else:  # the class of each row on the left
                h = x.shape[2] + 1
                ax.set_yticks([k * h + (h - 1) / 2 for k in range(len(row_labels))], row_labels)
                ax.set_xticks([])
                ax.tick_params(length=0)
                for spine in ax.spines.values():
                    spine.set_visible(False)
                ax.set_ylabel("class")
        else:
            ax.hist(_np(x.reshape(x.shape[0], -1)[:, 0]), bins=50)
            ax.set_xlabel("first output coordinate")
        ax.set_title(name)
    if title or note:
        fig.suptitle((title + note).strip())
    return fig


def quality_figure(rows: list[dict], tracking: dict) -> Figure:
    """Each tracked quality metric against the step, with the prior and the truncation trick as reference lines."""
    metrics = [k for k in rows[0] if k not in ("step", "phase") and any(r.get(k) is not None for r in rows)]
    cols = min(4, max(1, len(metrics)))
    grid_rows = math.ceil(max(1, len(metrics)) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * grid_rows), layout="constrained")
    axes = fig.subplots(grid_rows, cols, squeeze=False).ravel()
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    steps = np.array([r["step"] for r in rows])
    reference = tracking.get("reference", {})
    for ax, name in zip(axes, metrics):
        values = np.array([np.nan if r.get(name) is None else r[name] for r in rows], dtype=float)
        ax.plot(steps, values, marker=".", lw=1, label="chains")
        for (label, ref), style in zip(reference.items(), ("--", ":")):
            if ref.get(name) is not None:
                ax.axhline(ref[name], ls=style, c="0.4", lw=1, label=label)
        if tracking.get("metric") == name and tracking.get("best_step") is not None:
            ax.axvline(tracking["best_step"], c="C3", lw=1, label=f"best (step {tracking['best_step']})")
        warm = [r["step"] for r in rows if r.get("phase") == "warmup"]
        if warm:
            ax.axvspan(0, max(warm), color="0.93", zorder=0)
        ax.set_xlabel("step (warm-up shaded)" if warm else "step")
        ax.set_title(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize="x-small")
    fig.suptitle("quality along the chain (tracked chains); best-step states are a heuristic, not draws of exp(-E)",
                 fontsize="small")
    return fig


def _with_warmup(ax, warm: Tensor | None, main: Tensor, thin: int, label: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(chains, steps)`` values with the kept warm-up first (shaded on ``ax``), their step numbers, its length."""
    offset = 0 if warm is None else warm.shape[1]
    if offset:
        ax.axvspan(0, offset * thin, color="0.92", label=label)
        main = torch.cat([warm, main], 1)
    values = _np(main)
    return values, np.arange(values.shape[1]) * thin, offset


def energy_trace_figure(chains: Chains, max_chains: int = 8) -> Figure:
    """``E(z)`` per recorded step for a few chains, and the mean over all chains."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    energy, steps, offset = _with_warmup(ax, chains.warmup_energy, chains.energy, chains.thin, "warm-up")
    for k in range(min(max_chains, energy.shape[0])):
        ax.plot(steps, energy[k], lw=0.6, alpha=0.6)
    ax.plot(steps, energy.mean(0), c="k", lw=1.5, label=f"mean over {energy.shape[0]} chains")
    ax.set_xlabel("step" + (" (warm-up, then sampling)" if offset else " after warm-up"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("E(z)")
    ax.set_title(f"{chains.sampler}: energy trace")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def acceptance_figure(chains: Chains, target: float | None = None) -> Figure:
    """Mean acceptance probability across chains at each recorded step (and the adaptation target)."""
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots()
    values, steps, _ = _with_warmup(ax, chains.warmup_accept_prob, chains.accept_prob, chains.thin,
                                    "warm-up (step size adapting)")
    acc = values.mean(0)
    ax.plot(steps, acc, lw=1, label="mean acceptance probability")
    if target is not None:
        ax.axhline(target, ls="--", c="C3", lw=1, label=f"target {target:g}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("acceptance")
    ax.set_title(f"{chains.sampler}: acceptance, overall {float(chains.acceptance_rate.mean()):.3f} after warm-up")
    ax.legend(loc="lower right", fontsize="small")
    return fig
