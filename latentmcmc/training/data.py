"""Built-in data sets (no downloads): 2-D mixtures and scikit-learn's bundled 8x8 digits.

2-D sets follow the MEG code's constants: 25 Gaussians at (2i, 2j), i, j in -2..2, std 0.05, all
divided by 2.828; a ring of 8 Gaussians of radius 2, std 0.02, divided by 1.414; a swiss roll with
noise 0.25 divided by 7.5.  Digits are scaled to [-1, 1]; "stacked digits" put three independent
digits in three channels (1,000 modes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..deprecation import resolve_rng

__all__ = ["Dataset", "DatasetEntry", "TrainRecipe", "ShapeRecipe", "SHAPE_RECIPES", "shape_recipe", "file_dataset",
           "check_data", "check_data_argument",
           "load_dataset", "DATASETS", "gaussians25", "ring8", "swissroll", "digits",
           "stacked_digits"]


@dataclass
class Dataset:
    """In-memory training data ``x`` ``(n, *shape)`` with what metrics need to know about it."""

    name: str
    x: Tensor
    modes: Tensor | None = None  # (k, 2) mode centres of a 2-D mixture
    mode_std: float | None = None  # their common standard deviation
    labels: Tensor | None = None  # digit labels (n,) or (n, 3) for stacked digits
    metric: str | None = None  # quality metric family in latentmcmc.metrics.QUALITY_METRICS
    held_out: Tensor | None = None  # samples of a file kept out of training (the reference of its FD/KID)
    fingerprint: str | None = None  # a file's data_fingerprint (checkpoints record it; resume checks it)
    measure: Callable[[Tensor], dict] | None = None  # quality of samples when there is no built-in metric

    def quality(self, samples: Tensor) -> dict[str, float] | None:
        """This data set's quality metrics of generated ``samples``, or None when it has none."""
        if self.metric is None:
            return None if self.measure is None else self.measure(samples)
        from ..metrics import QUALITY_METRICS

        return QUALITY_METRICS[self.metric](self, samples)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batch(self, size: int, rng: torch.Generator | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """A batch drawn with replacement, reproducibly from ``rng`` (``generator=``: its deprecated 0.1 name)."""
        idx = torch.randint(0, self.x.shape[0], (size,), generator=resolve_rng(rng, generator))
        return self.x[idx]


def _mixture(centres: Tensor, std: float, n: int, rng: torch.Generator) -> Tensor:
    idx = torch.randint(0, centres.shape[0], (n,), generator=rng)
    return centres[idx] + std * torch.randn(n, 2, generator=rng)


def gaussians25(n: int = 100_000, seed: int = 0) -> Dataset:
    rng = torch.Generator().manual_seed(seed)
    grid = torch.arange(-2, 3, dtype=torch.float32) * 2.0
    centres = torch.cartesian_prod(grid, grid)
    scale = 2.828
    x = _mixture(centres, 0.05, n, rng) / scale
    return Dataset("gaussians25", x, centres / scale, 0.05 / scale, metric="mixture")


def ring8(n: int = 100_000, seed: int = 0) -> Dataset:
    rng = torch.Generator().manual_seed(seed)
    angle = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    scale = 1.414
    x = _mixture(centres, 0.02, n, rng) / scale
    return Dataset("ring8", x, centres / scale, 0.02 / scale, metric="mixture")


def swissroll(n: int = 100_000, seed: int = 0) -> Dataset:
    """scikit-learn's ``make_swiss_roll`` (x and z coordinates), noise 0.25, divided by 7.5."""
    from sklearn.datasets import make_swiss_roll

    data, _ = make_swiss_roll(n_samples=n, noise=0.25, random_state=seed)
    return Dataset("swissroll", torch.as_tensor(data[:, [0, 2]] / 7.5, dtype=torch.float32), metric="swissroll")


def _digit_images() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32) / 8.0 - 1.0  # 0..16 -> -1..1
    return x.unsqueeze(1), torch.as_tensor(d.target)  # (1797, 1, 8, 8)


def digits() -> Dataset:
    x, y = _digit_images()
    return Dataset("digits", x, labels=y, metric="digits")


def stacked_digits(n: int = 50_000, seed: int = 0) -> Dataset:
    """Three independently drawn digits as the three channels of one 3x8x8 image (1,000 modes)."""
    x, y = _digit_images()
    rng = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.shape[0], (n, 3), generator=rng)
    return Dataset("stacked-digits", x[idx, 0], labels=y[idx], metric="digits")


@dataclass(frozen=True)
class TrainRecipe:
    """Training settings that reach a good model of one data set in minutes on 2 CPU cores.

    ``latentmcmc train --data X`` (and ``TrainConfig(data=X)``) use the recipe of ``X`` for every
    setting not given.  ``reaches`` says what it reached when measured here (prior samples of the
    trained generator, seed 0) and how long it took; ``benchmarks/recipes.py`` reproduces it.
    """

    steps: int
    width: int = 256
    lr: float = 2e-4
    batch_size: int = 256
    critic_steps: int = 5
    gp_weight: float = 0.1
    entropy: str = "dim"
    reaches: str = ""


@dataclass(frozen=True)
class DatasetEntry:
    """A built-in data set: how to load it, a one-line summary and its training recipe.

    Calling an entry loads the data set (as the 0.1 table of functions did).
    """

    load: Callable[[], Dataset]
    summary: str
    recipe: TrainRecipe

    def __call__(self) -> Dataset:
        return self.load()


DATASETS: dict[str, DatasetEntry] = {
    "gaussians25": DatasetEntry(gaussians25, "25 Gaussians on a 5x5 grid (2-D)", TrainRecipe(
        steps=8000, reaches="25 of 25 modes, HQ 0.318, in 5.1 min")),
    "ring8": DatasetEntry(ring8, "8 Gaussians on a ring (2-D)", TrainRecipe(
        steps=4000, reaches="8 of 8 modes, HQ 0.210, in 2.5 min")),
    "swissroll": DatasetEntry(swissroll, "swiss roll (2-D)", TrainRecipe(
        steps=4000, reaches="HQ 0.779 in 2.7 min")),
    "digits": DatasetEntry(digits, "scikit-learn's 8x8 digits (1,797 images, 10 classes)", TrainRecipe(
        steps=6000, lr=1e-4, gp_weight=10.0, reaches="10 of 10 classes, FD 4.10, in 4.0 min")),
    "stacked-digits": DatasetEntry(stacked_digits, "three digits as three channels (1,000 modes)", TrainRecipe(
        steps=6000, lr=1e-4, gp_weight=10.0, reaches="596 modes in 1,000 samples (uniform: 632), FD 4.18, in 5.2 min")),
}


IMAGE_REACHES = ("Fashion-MNIST 28x28: FD 44.6 to held-out images in a classifier's features, 10 of 10 classes, in "
                 "12.6 min")  # benchmarks/fashion_energy_gan.py, entropy dim, seed 0


@dataclass(frozen=True)
class ShapeRecipe:
    """The recipe for data from files, chosen by the samples' shape: which networks, which settings, what it reached."""

    summary: str
    fits: Callable[[tuple], bool]
    arch: str  # a key of latentmcmc.training.networks.ARCHITECTURES
    recipe: TrainRecipe
    latent_dim: int


def _is_image(shape: tuple) -> bool:
    from .networks import conv_fits

    return conv_fits(shape)


SHAPE_RECIPES: dict[str, ShapeRecipe] = {
    "images": ShapeRecipe(
        "square images of 1 or 3 channels, an even side from 8 to 64: DCGAN-style convolutions", _is_image, "conv",
        TrainRecipe(steps=3000, width=32, lr=2e-4, batch_size=64, critic_steps=2, gp_weight=10.0,
                    reaches=IMAGE_REACHES), 64),
    "other": ShapeRecipe("any other shape: MLPs on the flattened samples", lambda shape: True, "mlp",
                         TrainRecipe(steps=2000), 32),
}
"""Recipes for ``--data PATH``, tried in order: the first whose ``fits(shape)`` holds."""


def shape_recipe(shape: tuple[int, ...]) -> tuple[str, ShapeRecipe]:
    """The first entry of :data:`SHAPE_RECIPES` that fits ``shape``."""
    return next((name, entry) for name, entry in SHAPE_RECIPES.items() if entry.fits(tuple(shape)))


def file_dataset(path: str, data_shape: tuple[int, ...] | None = None, holdout: float = 0.1, seed: int = 0,
                 features: str | None = None) -> Dataset:
    """Samples read from ``path`` (:func:`latentmcmc.datafiles.read_data`: uint8/uint16 pixels scaled to [-1, 1]), viewed as
    ``data_shape``, with a share ``holdout`` kept out of training (a seeded split).

    ``features`` (an exported feature extractor) measures generated samples against the held-out ones
    (FD, KID, precision/recall, density/coverage).  Images must lie in [-1, 1] (the generator ends in tanh).
    """
    from ..datafiles import DataFileError, data_fingerprint, fit_to, read_data

    x = read_data(path, value_range=(-1.0, 1.0))
    if data_shape:
        if x[0].numel() != math.prod(data_shape):
            raise DataFileError(f"{path} has samples of shape {tuple(x.shape[1:])} ({x[0].numel()} values), which "
                                f"--data-shape {','.join(map(str, data_shape))} ({math.prod(data_shape)} values) "
                                "cannot view")
        x = fit_to(x, tuple(data_shape), name=str(path))
    if len(x.shape) > 2 and (float(x.min()) < -1.0 or float(x.max()) > 1.0):
        raise DataFileError(f"{path} holds images with values in [{float(x.min()):.3g}, {float(x.max()):.3g}]; the "
                            "generator ends in tanh, so images must be uint8 or uint16 pixels (scaled to [-1, 1] on reading) or "
                            "numbers in [-1, 1]")
    n = x.shape[0]
    held = int(round(holdout * n))
    if holdout > 0 and (held < 2 or n - held < 2):
        raise DataFileError(f"{path} has {n} samples: --holdout {holdout:g} leaves {held} held out and {n - held} to "
                            "train on; each side needs at least 2 (or --holdout 0)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    data = Dataset(str(path), x[order[held:]], held_out=x[order[:held]] if held else None,
                   fingerprint=data_fingerprint(x))
    if features is not None:
        if data.held_out is None:
            raise ValueError("--features measures generated samples against held-out data: give --holdout > 0")
        if held < 200:
            warnings.warn(f"{path}: FD and KID against only {held} held-out samples are noisy (their bias grows as the "
                          "set shrinks): hold out more (--holdout) for numbers that compare", UserWarning, stacklevel=2)
        data.measure = _feature_measure(features, data.held_out)
    return data


def _feature_measure(features: str, reference: Tensor) -> Callable[[Tensor], dict]:
    """FD, KID, precision/recall and density/coverage in an exported extractor's features against ``reference``."""
    from ..feature_metrics import FeatureQuality
    from ..io.torch_export import load_exported

    quality = FeatureQuality(load_exported(features, "cpu", name=f"feature extractor {features}"), reference,
                             name=f"features of {features}", reference_name="held-out data")

    def measure(samples: Tensor) -> dict:
        return {k: v for k, v in quality(samples.cpu()).items() if k != "notes"}

    return measure


def check_data(name: str) -> str:
    """``name`` if it is a built-in data set or an existing file or folder; else a ValueError saying so.

    A built-in name means the built-in set even where a file or folder of that name exists (``./digits``
    names the folder); the command line refuses such a typed name as ambiguous (:func:`check_data_argument`).
    """
    if name not in DATASETS and not Path(name).exists():
        raise ValueError(f"unknown data set {name!r}: neither a built-in one ({', '.join(DATASETS)}) nor a file or "
                         "folder that exists")
    return name


def check_data_argument(name: str) -> str:
    """:func:`check_data` for a name typed on the command line, refusing a bare name that is both a built-in set and
    a file or folder in the working directory (which one was meant cannot be told)."""
    if name in DATASETS and Path(name).exists():
        raise ValueError(f"{name!r} is both a built-in data set and a file or folder in this directory: write "
                         f"./{name} for the file or folder, or move it (or run elsewhere) for the built-in set")
    return check_data(name)


def load_dataset(name: str, data_shape: tuple[int, ...] | None = None, holdout: float = 0.1, seed: int = 0,
                 features: str | None = None) -> Dataset:
    """One of :data:`DATASETS` by name, or samples from a file or folder (:func:`file_dataset`)."""
    if check_data(name) in DATASETS:
        return DATASETS[name].load()
    return file_dataset(name, data_shape, holdout, seed, features)
