"""The exact grid target, critic calibration, the baseline methods and ``compare``: known answers on small models."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.mc import z_threshold
from torch import nn

from latentmcmc.calibration import calibrate
from latentmcmc.compare import compare, comparison_figure, comparison_table
from latentmcmc.exact import grid_target, total_variation, tv_noise_floor
from latentmcmc.methods import METHODS, Problem
from latentmcmc.samplers import SAMPLERS


class Shift(nn.Module):
    """U(x) = -a . x: with the prior term E = beta U(z) + |z|^2/2 is N(beta a, I), log Z = beta^2 |a|^2 / 2."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a), requires_grad=False)

    def forward(self, x):
        return -(x * self.a).sum(1)


def test_grid_target_of_a_shifted_gaussian_has_the_known_moments_and_log_z():
    beta, a = 2.0, [0.5, -0.25]
    problem = Problem(nn.Identity(), Shift(a), (2,), beta=beta)
    grid = grid_target(problem.energy, points_per_axis=401)
    mean = grid.expectation(grid.points)
    # the model runs in float32 on the grid points: agreement to float32 rounding (the midpoint rule is exact to ~1e-12 here)
    torch.testing.assert_close(mean, beta * torch.tensor(a, dtype=torch.float64), atol=1e-5, rtol=0)
    assert grid.log_z == pytest.approx(0.5 * beta**2 * (0.25 + 0.0625), abs=1e-6)


def test_tv_noise_floor_is_the_spread_of_exact_draws():
    p = torch.tensor([0.5, 0.3, 0.2])
    mean, q95 = tv_noise_floor(p, 1000, repeats=300)
    assert 0.005 < mean < q95 < 0.05  # ~ sqrt(k / n) scale
    assert total_variation(p, p) == 0.0 and total_variation(torch.tensor([1.0, 0]), torch.tensor([0, 1.0])) == 1.0


def test_platt_calibration_recovers_a_known_log_density_ratio():
    """Real data N(1, 1), generator N(0, 1) in 1-D: log p_data/p_G = x - 1/2.  A critic U(x) = -3x has
    realness 3x, so the calibrated logit must be x - 1/2: slope 1/3, intercept -1/2."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(20000, 1, generator=g) + 1.0

    class Critic(nn.Module):
        def forward(self, x):
            return -3.0 * x[:, 0]

    cal = calibrate(nn.Linear(1, 1).requires_grad_(False).eval().apply(_identity), Critic(), (1,), real, n=20000)
    assert cal.fitted
    assert cal.slope == pytest.approx(1 / 3, abs=0.02) and cal.intercept == pytest.approx(-0.5, abs=0.05)
    assert not calibrate(nn.Identity(), Critic(), (1,), None, beta=2.5).fitted


def _identity(module):
    if isinstance(module, nn.Linear):
        module.weight.fill_(1.0)
        module.bias.fill_(0.0)


def test_methods_table_holds_every_sampler_and_the_baselines():
    assert set(SAMPLERS) <= set(METHODS) and {"prior", "truncation", "mh-gan", "drs", "dot"} <= set(METHODS)
    for name, method in METHODS.items():
        assert method.summary, name


def test_mh_gan_without_data_samples_the_latent_target():
    """Independent MH with prior proposals on exp(-beta U): on the shifted Gaussian its mean is beta a."""
    beta, a = 1.0, [0.6, 0.0]
    problem = Problem(nn.Identity(), Shift(a), (2,), beta=beta)
    z0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    run = METHODS["mh-gan"].run(problem, z0, budget=60, seed=2)
    assert not run.notes["calibrated"] and run.evaluations.forward == 60
    m, se = run.z[:, 0].mean(), run.z[:, 0].std() / math.sqrt(4000)
    assert abs(float(m) - 0.6) < z_threshold(1) * float(se)


@pytest.mark.slow
def test_compare_on_a_2d_target_ranks_exact_methods_within_the_noise_floor(tmp_path):
    """Two separated modes; the exact target is known on the grid.  Global moves land within the noise floor
    of exact sampling; the prior is far from it."""

    class TwoWells(nn.Module):
        def forward(self, x):
            return 4.0 * torch.minimum((x[:, 0] - 1.5).square(), 1.2 * (x[:, 0] + 1.5).square()) + 0.5 * x[:, 1].square()

    result = compare(nn.Identity(), TwoWells(), (2,), methods=["prior", "isir", "mala"], budget=200, beta=1.0,
                     num_chains=1000, seed=0, grid_points=301)
    rows, s = result.rows, result.settings
    assert s["exact_distance"] == "latent 20x20 histogram"
    assert rows["isir"]["tv_to_exact"] < s["tv_floor_95"] * 1.5 < rows["prior"]["tv_to_exact"]
    assert rows["isir"]["passes"] <= 200 + 10 and rows["mala"]["passes"] <= 200 + 10
    assert "TV-exact" in comparison_table(result) and rows["isir"]["exact"] and not rows["prior"]["exact"]
    comparison_figure(result).savefig(tmp_path / "c.png")


def test_compare_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown method"):
        compare(nn.Identity(), Shift([0.1, 0.1]), (2,), methods=["nuts"])
    with pytest.raises(ValueError, match="budget"):
        compare(nn.Identity(), Shift([0.1, 0.1]), (2,), methods=["mala"], budget=1)
