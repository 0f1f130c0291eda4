"""Sample quality along the chain: the tracked metrics every ``k`` steps, and the best step's states.

Every ``k`` steps (warm-up included) a :class:`QualityTracker` maps a fixed subset of the chains'
current latents through the generator and measures them with the run's quality metrics (the data
set's, or those of the user's features).  Step 0 is the prior; the truncation trick (psi 0.7) on the
same latents is measured once as a reference.  With ``keep="best"`` the states of every chain at
the best tracked step are kept.

Stopping at the best quality is a heuristic: the states at that step are not draws from
``exp(-E)`` (a chain that has not yet converged can look better than the target, and the best of
many noisy measurements is biased upwards), however good they look.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..feature_metrics import METRIC_DIRECTIONS, headline_metric

__all__ = ["QualityTracker", "default_track_metric", "KEEP_CHOICES"]

KEEP_CHOICES = {
    "last": "the chains' final states",
    "best": "their states at the best tracked step (a heuristic: not draws from exp(-E))",
}
"""Which states a refinement outputs (``RefineOptions.keep``, ``--keep``): name -> summary."""


def default_track_metric(row: dict[str, Any]) -> str | None:
    """The metric ``keep="best"`` decides on when none is named: the row's headline metric (FD, else KID, else HQ)."""
    return headline_metric(row)


class QualityTracker:
    """The driver observer that measures ``quality(G(z[subset]))`` every ``every`` steps."""

    def __init__(self, quality: Callable[[Tensor], dict], generator: nn.Module, view: Callable[[Tensor], Tensor] | None,
                 every: int, chains: int, metric: str | None, keep_best: bool, prior=None) -> None:
        self.quality, self.generator, self.view = quality, generator, view or (lambda x: x)
        self.prior = prior  # the run's LatentPrior (the truncation row follows it; None: 0.7 z)
        self.every, self.chains, self.metric, self.keep_best = every, chains, metric, keep_best
        self.rows: list[dict[str, Any]] = []
        self.reference: dict[str, dict] = {}
        self.best: tuple[int, float] | None = None
        self.best_z: Tensor | None = None
        self.warmup = 0

    @torch.no_grad()
    def _measure(self, z: Tensor) -> dict[str, Any]:
        x = self.view(self.generator(z[: self.chains]))
        return {k: v for k, v in self.quality(x).items() if k != "notes"}

    def start(self, z0: Tensor, warmup: int) -> None:
        """Measure the prior (step 0) and the truncation trick on the tracked latents."""
        self.warmup = warmup
        self.chains = min(self.chains, z0.shape[0])
        self.reference = {"prior": self._measure(z0)}
        if self.prior is None or self.prior.truncates:
            truncated = 0.7 * z0 if self.prior is None else self.prior.truncate(z0, 0.7)
            self.reference["truncation psi 0.7"] = self._measure(truncated)
        self._record(0, z0)

    def _record(self, step: int, z: Tensor) -> None:
        row = {"step": step, "phase": "prior" if step == 0 else ("warmup" if step <= self.warmup else "sampling"),
               **self._measure(z)}
        self.rows.append(row)
        if self.metric is None:
            self.metric = default_track_metric(row)
        value = row.get(self.metric) if self.metric else None
        if value is None or not math.isfinite(value):
            return
        better = self.best is None or (value < self.best[1] if METRIC_DIRECTIONS.get(self.metric) == "lower"
                                       else value > self.best[1])
        if better:
            self.best = (step, value)
            if self.keep_best:
                self.best_z = z.detach().clone()

    def __call__(self, run) -> None:
        self.warmup = run.warm_end
        self._record(run.i, run.state.z)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"every": self.every, "chains": self.chains, "metric": self.metric,
                               "reference": self.reference}
        if self.best is not None:
            out.update(best_step=self.best[0], best_value=self.best[1])
        return out

    def state_dict(self) -> dict:
        return {"rows": self.rows, "reference": self.reference, "best": self.best, "best_z": self.best_z,
                "metric": self.metric}

    def load_state_dict(self, d: dict) -> None:
        self.rows, self.reference, self.best, self.best_z, self.metric = (list(d["rows"]), d["reference"],
                                                                          d["best"], d["best_z"], d["metric"])
