"""Sample-quality metrics on known answers."""

import math

import pytest
import torch
from helpers.mc import z_threshold

from latentmcmc.metrics import frechet_distance, kl_to_uniform, mixture_quality
from latentmcmc.training import load_dataset


def test_exact_mixture_samples_score_as_the_theory_says():
    data = load_dataset("gaussians25")
    x = data.x[:10_000]
    q = mixture_quality(x, data.modes, data.mode_std)
    p = 1 - math.exp(-4.5)  # P(chi^2_2 < 9): a 2-D Gaussian sample within 3 sd of its centre
    assert abs(q["hq_fraction"] - p) < z_threshold(1) * math.sqrt(p * (1 - p) / 10_000)
    assert q["modes"] == 25 and q["kl"] < 0.01


def test_collapsed_samples_score_badly():
    data = load_dataset("gaussians25")
    x = data.modes[0] + data.mode_std * torch.randn(1000, 2)
    q = mixture_quality(x, data.modes, data.mode_std)
    assert q["modes"] == 1 and abs(q["kl"] - math.log(25)) < 1e-9


def test_kl_to_uniform():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == 0.0
    assert abs(kl_to_uniform(torch.tensor([1, 0, 0, 0])) - math.log(4)) < 1e-12


def test_frechet_distance_of_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) < 1e-8
    shift = torch.tensor([1.0, 0.0, -2.0, 0.5], dtype=torch.float64)
    b = torch.randn(20_000, 4, generator=g, dtype=torch.float64) * 2.0 + shift
    # closed form: |m|^2 + sum over dims of (1 + 4 - 2 * 2) = 5.25 + 4
    assert abs(frechet_distance(a, b) - 9.25) < 0.15


@pytest.mark.slow
def test_shipped_digit_classifier_and_digit_metrics():
    from latentmcmc.metrics import digit_quality, load_digit_classifier

    clf = load_digit_classifier()
    data = load_dataset("digits")
    with torch.no_grad():
        acc = float((clf(data.x).argmax(1) == data.labels).float().mean())
    assert acc > 0.97  # 98% held out, 99.6% on its training split
    real = digit_quality(data.x[:900], data.x[900:], clf)
    assert real["modes"] == 10 and real["kl"] < 0.02  # FD of two real halves is small but biased (n=900, d=128)
    noise = digit_quality(torch.rand(900, 1, 8, 8) * 2 - 1, data.x[900:], clf)
    assert noise["fd"] > 10 * real["fd"]
    stacked = load_dataset("stacked-digits")
    q = digit_quality(stacked.x[:20_000], stacked.x[20_000:40_000], clf)
    assert q["modes"] > 990 and q["kl"] < 0.1
