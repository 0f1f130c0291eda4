"""Systematic resampling: unbiased counts within one of n w_j, every item once under equal weights."""

from __future__ import annotations

import pytest
import torch

from latentmcmc.diagnostics import systematic_resample


def multinomial_resample(weights, generator):  # what 0.2.0.dev0 did before: the test below must fail on it
    return torch.multinomial(weights, weights.numel(), replacement=True, generator=generator)


@pytest.mark.parametrize("resample", [systematic_resample,
                                      pytest.param(multinomial_resample, marks=pytest.mark.xfail(strict=True))])
def test_equal_weights_keep_every_item_once(resample):
    n = 2000
    picked = resample(torch.full((n,), 1.0 / n), torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(picked).values, torch.arange(n))


def test_counts_are_floor_or_ceil_of_n_w_and_unbiased():
    g = torch.Generator().manual_seed(1)
    n = 500
    w = torch.distributions.Dirichlet(torch.full((n,), 0.3)).sample()
    w = w / w.sum()
    total = torch.zeros(n, dtype=torch.float64)
    repeats = 400
    for _ in range(repeats):
        counts = torch.bincount(systematic_resample(w, g), minlength=n).double()
        assert bool(((counts >= torch.floor(n * w.double()) - 1e-9) & (counts <= torch.ceil(n * w.double()) + 1e-9)).all())
        total += counts
    # E[count_j] = n w_j; a count is floor or ceil, so its sd is at most 0.5: the mean over repeats is
    # within 5 standard errors of n w_j for every item (500 items: a false alarm has probability < 1e-3)
    assert bool(((total / repeats - n * w.double()).abs() <= 5 * 0.5 / repeats ** 0.5).all())


def test_zero_weight_items_are_never_picked():
    w = torch.tensor([0.0, 0.5, 0.0, 0.5, 0.0])
    for seed in range(20):
        picked = systematic_resample(w, torch.Generator().manual_seed(seed))
        assert set(picked.tolist()) <= {1, 3}
