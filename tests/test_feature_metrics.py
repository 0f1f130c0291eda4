"""Feature-space quality metrics: our precision/recall/density/coverage equal prdc's, FD equals latentmcmc's own
Frechet distance, KID and IS behave as defined, and what cannot be computed is None with a reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentmcmc.feature_metrics import FeatureQuality, precision_recall_density_coverage
from latentmcmc.metrics import frechet_distance

pytest.importorskip("torchmetrics")


def features(n, d=8, shift=0.0, scale=1.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale + shift


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_density_coverage_equal_prdc(k):
    prdc = pytest.importorskip("prdc")
    real, fake = features(700, seed=1), features(500, shift=0.3, scale=1.2, seed=2)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        ref = prdc.compute_prdc(real.numpy(), fake.numpy(), k)
    ours = precision_recall_density_coverage(real, fake, k, chunk=64)  # chunks smaller than the sets
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(ref[name]), abs=1e-12), name


@pytest.mark.slow
def test_fd_kid_and_is_through_feature_quality():
    real = features(1500, seed=3)
    q = FeatureQuality(nn.Identity(), real, name="identity")
    same, shifted = q(features(1500, seed=4)), q(features(1500, shift=0.5, seed=5))
    torch.testing.assert_close(torch.tensor(shifted["fd"]), torch.tensor(frechet_distance(real, features(1500, shift=0.5,
                                                                                                         seed=5))),
                               rtol=1e-6, atol=1e-8)
    assert abs(same["kid"]) < 0.01 < shifted["kid"] and same["fd"] < 0.1 < shifted["fd"]
    assert same["precision"] > shifted["precision"]

    class Confident(nn.Module):
        """A classifier sure of one of 10 classes, evenly: IS = 10."""

        def forward(self, x):
            return 50.0 * nn.functional.one_hot(x[:, 0].abs().mul(1000).long() % 10, 10).float()

    q = FeatureQuality(nn.Identity(), real, classifier=Confident())
    assert q(features(2000, seed=6))["is"] == pytest.approx(10.0, rel=0.05)


def test_what_cannot_be_computed_is_none_with_a_reason():
    q = FeatureQuality(nn.Identity(), features(50, seed=7), name="identity")
    few = q(features(4, seed=8))
    assert few["precision"] is None and "k=5" in few["notes"]["precision/recall/density/coverage"]
    assert few["fd"] is not None
    bad = features(20, seed=9)
    bad[3, 0] = float("nan")
    out = q(bad)
    assert all(out[k] is None for k in ("fd", "kid", "precision")) and "non-finite" in out["notes"]["all"]


def test_shapes_are_checked_with_the_problem_named():
    q = FeatureQuality(nn.Identity(), features(50, seed=10))
    with pytest.raises(ValueError, match="shape .* per sample but the reference data has"):
        q(torch.randn(10, 7, dtype=torch.float64))

    class Wrong(nn.Module):
        def forward(self, x):
            return x.sum(1)

    with pytest.raises(ValueError, match="must return \\(n, d\\) features"):
        FeatureQuality(Wrong(), features(50, seed=11))
