"""Sample quality in a feature space the user supplies: Frechet distance, KID, precision/recall,
density/coverage and Inception Score from the user's classifier.

The features come from the user's extractor (``x -> (n, d)``, e.g. a torch.export program), computed
once per sample set in batches on the extractor's device.  Then:

* FD (Frechet distance), KID (kernel distance, the unbiased MMD^2 with a cubic polynomial kernel over
  random subsets) and IS (from the user's classifier logits, 10 splits) are torchmetrics'
  ``FrechetInceptionDistance``, ``KernelInceptionDistance`` and ``InceptionScore`` fed with these
  features (torchmetrics is actively maintained, keeps float64 running sums and runs on the GPU;
  ``pip install "latentmcmc[metrics]"``);
* precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al. 2020) are
  computed here with chunked k-nearest-neighbour distances on the features' device, so 10^4-10^5
  samples need no 10^5 x 10^5 matrix in memory (prdc, their authors' package, is numpy with the full
  matrix and has had no release since 2020); they equal prdc's on the same features (tested).

These are *not* Inception FIDs: the numbers depend on the extractor, which reports always name.  A
metric that cannot be computed (too few samples, non-finite features) is None with the reason in
``notes``, never a number.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .io.torch_export import first_line

__all__ = ["FeatureQuality", "precision_recall_density_coverage", "METRIC_DIRECTIONS"]

METRIC_DIRECTIONS = {
    "fd": "lower", "kid": "lower", "precision": "higher", "recall": "higher", "density": "higher",
    "coverage": "higher", "is": "higher", "hq_fraction": "higher", "modes": "higher", "kl": "lower",
    "class_acc": "higher",
}
"""Whether a larger value of each quality metric is better (``higher``) or worse (``lower``)."""

HEADLINE_METRICS = ("fd", "kid", "hq_fraction", "precision", "modes")
"""The metrics that stand for a set of samples' quality, in order of preference: the first one a run has
decides ``keep="best"`` and heads the comparison figure."""


def headline_metric(row: dict) -> str | None:
    """The first of :data:`HEADLINE_METRICS` that ``row`` (a quality measurement) has a value for, else None."""
    return next((name for name in HEADLINE_METRICS if row.get(name) is not None), None)


def _kth_smallest_distances(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of every row of ``x`` to its ``k``-th nearest other row (the ``k+1``-th smallest, self included)."""
    out = []
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i:i + chunk], x)
        out.append(torch.topk(d, k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(out)


@torch.no_grad()
def precision_recall_density_coverage(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020) of ``fake`` against ``real``.

    A real point's ball has the radius of its ``k``-th nearest real neighbour.  Precision: share of
    fake points inside some real ball; recall: share of real points inside some fake ball (fake
    radii likewise); density: mean number of real balls holding a fake point, over ``k``; coverage:
    share of real balls holding a fake point.  Distances are computed in chunks of ``chunk`` rows.
    """
    real, fake = real.double(), fake.double()
    r_real = _kth_smallest_distances(real, k, chunk)
    r_fake = _kth_smallest_distances(fake, k, chunk)
    inside_count = torch.zeros(fake.shape[0], dtype=torch.float64, device=fake.device)
    real_covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    real_recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for i in range(0, real.shape[0], chunk):
        d = torch.cdist(real[i:i + chunk], fake)  # (chunk, fakes)
        inside = d < r_real[i:i + chunk, None]
        inside_count += inside.sum(0)
        real_covered[i:i + chunk] = d.min(1).values < r_real[i:i + chunk]
        real_recalled[i:i + chunk] = (d < r_fake[None, :]).any(1)
    return {"precision": float((inside_count > 0).double().mean()), "recall": float(real_recalled.double().mean()),
            "density": float(inside_count.mean() / k), "coverage": float(real_covered.double().mean())}


class _Given(nn.Module):
    """The identity with a ``num_features`` attribute: torchmetrics' metrics fed with features computed here."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _torchmetrics():
    try:
        import torchmetrics  # noqa: F401
    except ImportError as err:
        raise ImportError('quality metrics from your own features need torchmetrics: pip install "latentmcmc[metrics]"'
                          ) from err
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    return FrechetInceptionDistance, KernelInceptionDistance, InceptionScore


class FeatureQuality:
    """Quality metrics of generated samples in the feature space of ``extractor``, against ``reference`` samples.

    Args:
        extractor: module ``(n, *data_shape) -> (n, d)`` features (e.g. a classifier's penultimate layer).
        reference: real samples ``(m, *data_shape)``; their features are computed once.
        classifier: optional module ``(n, *data_shape) -> (n, classes)`` logits, for the Inception Score.
        name: how reports name the feature space (``"features of f.pt2"``).
        reference_name: how messages name the reference samples.
        k: neighbours for precision/recall/density/coverage.
        batch: samples per extractor call.
    """

    def __init__(self, extractor: nn.Module, reference: Tensor, classifier: nn.Module | None = None,
                 name: str = "your features", k: int = 5, batch: int = 4096, reference_name: str = "reference data"
                 ) -> None:
        _torchmetrics()
        self.extractor, self.classifier, self.name, self.k, self.batch = extractor, classifier, name, k, batch
        self.data_shape = tuple(reference.shape[1:])
        self.reference = reference
        self.reference_features = self.features(reference, reference_name)
        if not bool(torch.isfinite(self.reference_features).all()):
            raise ValueError(f"the feature extractor ({name}) gives non-finite features for the reference data")

    @torch.no_grad()
    def features(self, x: Tensor, what: str = "samples") -> Tensor:
        """``(n, d)`` features of ``x``, in batches; a ValueError naming the problem for a wrong shape."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"{what} have shape {tuple(x.shape[1:])} per sample but the reference data has "
                             f"{self.data_shape}: use --data-shape to view the generator's output as the data's shape")
        device = next((p.device for p in self.extractor.parameters()), x.device) if isinstance(
            self.extractor, nn.Module) else x.device
        out = []
        for i in range(0, x.shape[0], self.batch):
            batch = x[i:i + self.batch].to(device)
            try:
                f = self.extractor(batch)
            except (RuntimeError, ValueError, AssertionError) as err:  # torch.export's guards, shape mismatches
                raise ValueError(f"the feature extractor ({self.name}) failed on {what} of shape "
                                 f"{tuple(batch.shape[1:])} per sample (does it take images of that shape?): "
                                 f"{first_line(err)}") from None
            if not isinstance(f, Tensor) or f.dim() != 2:
                shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                raise ValueError(f"the feature extractor ({self.name}) returned {shape} for a batch of "
                                 f"{min(self.batch, x.shape[0] - i)} samples; it must return (n, d) features")
            out.append(f.double())
        return torch.cat(out)

    @torch.no_grad()
    def __call__(self, samples: Tensor) -> dict[str, Any]:
        fid_cls, kid_cls, is_cls = _torchmetrics()
        fake = self.features(samples)
        real = self.reference_features.to(fake.device)
        out: dict[str, Any] = {"fd": None, "kid": None, "precision": None, "recall": None, "density": None,
                               "coverage": None}
        notes: dict[str, str] = {}
        if not bool(torch.isfinite(fake).all()):
            notes["all"] = "non-finite features of the samples"
            return {**out, "notes": notes}
        n, m = fake.shape[0], real.shape[0]
        if min(n, m) >= 2:
            fid = fid_cls(feature=_Given(fake.shape[1])).to(fake.device).set_dtype(torch.float64)
            fid.update(real, real=True)
            fid.update(fake, real=False)
            out["fd"] = float(fid.compute())
        else:
            notes["fd"] = "fewer than 2 samples"
        subset = min(1000, n, m)
        if subset >= 2:
            import warnings

            with warnings.catch_warnings():  # torchmetrics' notice that KID keeps the features: we hand it them
                warnings.filterwarnings("ignore", message=".*will save all extracted features")
                kid = kid_cls(feature=_Given(fake.shape[1]), subset_size=subset, subsets=100).to(fake.device)
            kid.update(real, real=True)
            kid.update(fake, real=False)
            with torch.random.fork_rng(devices=[fake.device] if fake.is_cuda else []):
                torch.manual_seed(0)  # KID's random subsets: the same for every call
                mean, _std = kid.compute()
            out["kid"] = float(mean)
        else:
            notes["kid"] = "fewer than 2 samples"
        if min(n, m) > self.k:
            out.update(precision_recall_density_coverage(real, fake, self.k))
        else:
            notes["precision/recall/density/coverage"] = f"needs more than k={self.k} samples in each set"
        if self.classifier is not None:
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*will save all extracted features")
                inception = is_cls(feature=self.classifier, splits=min(10, n)).to(samples.device) if n >= 2 else None
            if inception is not None:
                with torch.random.fork_rng(devices=[samples.device] if samples.is_cuda else []):
                    torch.manual_seed(0)  # IS shuffles the samples into its splits
                    for i in range(0, n, self.batch):
                        inception.update(samples[i:i + self.batch])
                    mean, _std = inception.compute()
                out["is"] = float(mean) if math.isfinite(float(mean)) else None
            else:
                out["is"] = None
                notes["is"] = "fewer than 2 samples"
        if notes:
            out["notes"] = notes
        return out
