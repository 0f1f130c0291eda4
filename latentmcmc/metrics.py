"""Sample-quality metrics: mode coverage and precision on 2-D mixtures; digit modes and Frechet distance."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "mixture_quality", "kl_to_uniform", "frechet_distance", "DigitClassifier", "load_digit_classifier",
    "digit_quality", "swissroll_quality", "dataset_quality", "QUALITY_METRICS",
]


def kl_to_uniform(counts: Tensor) -> float:
    r"""``KL(p || uniform) = sum_k p_k log(K p_k)`` of a histogram over ``K`` modes (0 when even)."""
    counts = counts.to(torch.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts / total
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * counts.numel())).sum())


def mixture_quality(x: Tensor, modes: Tensor, std: float, n_std: float = 3.0, min_count: int = 20) -> dict[str, float]:
    """Quality of 2-D samples ``x`` from a mixture of isotropic Gaussians at ``modes`` with ``std``.

    ``hq_fraction``: share of samples within ``n_std`` standard deviations of their nearest mode;
    ``modes``: modes with at least ``min_count`` such samples; ``kl``: KL of the high-quality
    samples' mode histogram to uniform.
    """
    d = torch.cdist(x.detach().double().cpu(), modes.double().cpu())
    nearest = d.min(1)
    hq = nearest.values < n_std * std
    counts = torch.bincount(nearest.indices[hq], minlength=modes.shape[0])
    return {
        "hq_fraction": float(hq.double().mean()),
        "modes": int((counts >= min_count).sum()),
        "kl": kl_to_uniform(counts),
    }


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})`` between feature sets ``(n, d)``.

    The matrix square root is taken of the symmetric ``S_a^{1/2} S_b S_a^{1/2}`` by eigendecomposition,
    in float64.
    """
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m: Tensor) -> Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    root_a = sqrtm_psd(s_a)
    cross = sqrtm_psd(root_a @ s_b @ root_a)
    value = (mu_a - mu_b).square().sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * torch.trace(cross)
    return float(value.clamp(min=0.0)) if math.isfinite(float(value)) else float("nan")


# --------------------------------------------------------------------------- digits
class DigitClassifier(torch.nn.Module):
    """MLP ``64 -> 256 -> 128 -> 10`` on one 8x8 digit in [-1, 1]; ``features`` is the 128-d layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU()
        )
        self.head = torch.nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.reshape(x.shape[0], 64))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


CLASSIFIER_FILE = "digits_classifier.pt"


def load_digit_classifier() -> DigitClassifier:
    """The classifier shipped in the package (trained by ``benchmarks/train_digits_classifier.py``)."""
    from importlib import resources

    from .checkpoint import load_plain

    model = DigitClassifier()
    with resources.as_file(resources.files("latentmcmc") / "assets" / CLASSIFIER_FILE) as path:
        state = load_plain(path)
    model.load_state_dict(state["state_dict"])
    return model.eval()


@torch.no_grad()
def digit_quality(samples: Tensor, reference: Tensor, classifier: DigitClassifier | None = None) -> dict[str, float]:
    """Metrics of digit images ``(n, C, 8, 8)`` (C = 1 digits, C = 3 stacked digits).

    ``modes``: distinct predicted classes (out of 10, or 1,000 for three channels); ``kl``: KL of the
    predicted-class histogram to uniform; ``fd``: Frechet distance between the classifier's features
    of ``samples`` and of ``reference`` images (per channel, averaged over channels).
    """
    clf = classifier or load_digit_classifier()
    n, c = samples.shape[:2]
    channels = samples.detach().float().cpu().reshape(n * c, 1, 8, 8)
    labels = clf(channels).argmax(1).reshape(n, c)
    code = (labels * torch.tensor([10**k for k in range(c - 1, -1, -1)])).sum(1)
    counts = torch.bincount(code, minlength=10**c)
    ref = reference.detach().float().cpu()
    fd = sum(
        frechet_distance(clf.features(samples[:, k].float().cpu()), clf.features(ref[:, k % ref.shape[1]]))
        for k in range(c)
    ) / c
    return {"modes": int((counts > 0).sum()), "kl": kl_to_uniform(counts), "fd": fd}


def swissroll_quality(x: Tensor, noise: float = 0.25, scale: float = 7.5, n_std: float = 3.0) -> dict[str, float]:
    r"""Share of 2-D samples within ``n_std`` noise sds of the (scaled) swiss-roll curve.

    The curve is ``t (cos t, sin t) / scale`` for ``t`` in ``[1.5 pi, 4.5 pi]`` (scikit-learn's
    ``make_swiss_roll``, x and z coordinates); the noise sd is ``noise / scale``.
    """
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 4000, dtype=torch.float64)
    curve = torch.stack([t * t.cos(), t * t.sin()], 1) / scale
    d = torch.cdist(x.detach().double().cpu().reshape(-1, 2), curve).min(1).values
    return {"hq_fraction": float((d < n_std * noise / scale).double().mean())}


def _mixture(dataset, samples: Tensor) -> dict[str, float]:
    min_count = max(1, round(20 * samples.shape[0] / 10_000))
    return mixture_quality(samples, dataset.modes, dataset.mode_std, min_count=min_count)


def _swissroll(dataset, samples: Tensor) -> dict[str, float]:
    return swissroll_quality(samples)


def _digits(dataset, samples: Tensor, reference_size: int = 5000) -> dict[str, float]:
    return digit_quality(samples, dataset.x[:reference_size])


QUALITY_METRICS = {
    "mixture": _mixture,
    "swissroll": _swissroll,
    "digits": _digits,
}
"""Quality metric families by name: ``(dataset, samples) -> {metric: value}``.  A built-in data set
names its family in its table entry (:data:`latentmcmc.training.DATASETS`).

* ``mixture``: :func:`mixture_quality` (a mode counts with 20 high-quality samples per 10,000, at least 1);
* ``swissroll``: :func:`swissroll_quality`;
* ``digits``: :func:`digit_quality` against up to 5,000 training images.
"""


def dataset_quality(dataset, samples: Tensor) -> dict[str, float] | None:
    """The quality metrics that fit a built-in data set (``latentmcmc.training.Dataset``), or None."""
    return dataset.quality(samples)
