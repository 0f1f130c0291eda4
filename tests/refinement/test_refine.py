"""refine(): one call from prior draws to refined samples and metrics, in one block or many."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from latentmcmc import MALA, LatentEnergy
from latentmcmc.refinement import block_seed, refine


class Shifted(nn.Module):
    """``U(x) = 0.5 |x - m|^2``: with the prior term, ``exp(-E)`` is N(m / 2, I / 2)."""

    def __init__(self, m: float):
        super().__init__()
        self.m = m

    def forward(self, x):
        return 0.5 * (x - self.m).square().sum(1)


def test_blocked_run_samples_the_target():
    """Final states of 4,000 independent chains (4 blocks) against N(m/2, 1/2): z-scores within 4.4.

    Bonferroni over 2 coordinates x (mean, variance) at family-wise alpha 1e-4 gives |z| < 4.4;
    the variance's standard error is sqrt(2 / (n - 1)) sigma^2 (normal draws).
    """
    n, m = 4000, 1.5
    result = refine(nn.Identity(), Shifted(m), (2,), num_chains=n, block_size=1000, steps=60, warmup=100, seed=3,
                    progress=False)
    assert result.z.shape == (n, 2) and result.metrics["blocks"] == 4
    z = result.z.double()
    mean_z = (z.mean(0) - m / 2) / math.sqrt(0.5 / n)
    var_z = (z.var(0) - 0.5) / (0.5 * math.sqrt(2 / (n - 1)))
    assert mean_z.abs().max() < 4.4, mean_z
    assert var_z.abs().max() < 4.4, var_z
    # the same check has power: a target mean off by 0.1 (5.7 standard errors) is caught
    assert ((z.mean(0) - (m / 2 + 0.1)) / math.sqrt(0.5 / n)).abs().max() > 4.4


def test_each_block_is_the_run_its_seed_defines():
    """Block b = MALA from block_seed(seed, b): the draws do not depend on how blocks are scheduled."""
    result = refine(nn.Identity(), Shifted(1.0), (2,), num_chains=10, block_size=4, steps=5, warmup=5, seed=11,
                    progress=False)
    assert result.z.shape == (10, 2)
    s = block_seed(11, 2)
    z0 = torch.randn(2, 2, generator=torch.Generator().manual_seed(s))
    alone = MALA(LatentEnergy(nn.Identity(), Shifted(1.0)), eps=0.01).run(z0, steps=5, warmup=5, seed=s,
                                                                           record="last", progress=False)
    assert torch.equal(result.z0[8:], z0)
    assert torch.equal(result.z[8:], alone.last)
    assert block_seed(11, 0) != block_seed(11, 1) != block_seed(12, 1)


def test_recorded_blocks_carry_the_diagnostics():
    result = refine(nn.Identity(), Shifted(0.0), (3,), num_chains=50, block_size=20, steps=8, warmup=4, progress=False)
    assert result.chains.draws.shape == (50, 8, 3)  # every block recorded: diagnostics over all chains
    result = refine(nn.Identity(), Shifted(0.0), (3,), num_chains=50, block_size=20, record_blocks=1, steps=8, warmup=4,
                    progress=False)
    assert result.chains.draws.shape == (20, 8, 3)  # bounded memory: only block 0 keeps its draws
    assert result.metrics["diagnostic_chains"] == 20 and result.metrics["chains"] == 50
    assert 0 < result.metrics["acceptance"] <= 1 and "ess_bulk_energy" in result.metrics


def test_refine_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown sampler"):
        refine(nn.Identity(), Shifted(0.0), (2,), sampler="nuts", progress=False)
    with pytest.raises(ValueError, match="eps"):
        refine(nn.Identity(), Shifted(0.0), (2,), eps=0.0, progress=False)
    with pytest.raises(ValueError, match="block_size"):
        refine(nn.Identity(), Shifted(0.0), (2,), num_chains=10, block_size=0, progress=False)
