"""refine(): one call from prior draws to refined samples and metrics, in one block or many."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from latentmcmc import MALA, LatentEnergy
from latentmcmc.refinement import refine, stream_seeds


class Shifted(nn.Module):
    """``U(x) = 0.5 |x - m|^2``: with the prior term, ``exp(-E)`` is N(m / 2, I / 2)."""

    def __init__(self, m: float):
        super().__init__()
        self.m = m

    def forward(self, x):
        return 0.5 * (x - self.m).square().sum(1)


@pytest.mark.slow
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


def test_each_block_is_the_run_its_seeds_define():
    """Block b = MALA from stream_seeds(seed, b): the draws do not depend on how blocks are scheduled."""
    result = refine(nn.Identity(), Shifted(1.0), (2,), num_chains=10, block_size=4, steps=5, warmup=5, seed=11,
                    progress=False)
    assert result.z.shape == (10, 2)
    start, sampler = stream_seeds(11, 2)
    z0 = torch.randn(2, 2, generator=torch.Generator().manual_seed(start))
    alone = MALA(LatentEnergy(nn.Identity(), Shifted(1.0)), eps=0.01).run(z0, steps=5, warmup=5, seed=sampler,
                                                                           record="last", progress=False)
    assert torch.equal(result.z0[8:], z0)
    assert torch.equal(result.z[8:], alone.last)
    assert len({*stream_seeds(11, 0), *stream_seeds(11, 1), *stream_seeds(12, 1)}) == 6


def _start_noise_correlation(start_seed: int, sampler_seed: int, n: int = 20000) -> float:
    """Correlation of the starting points with the first noise draw of a sampler seeded ``sampler_seed``."""
    z0 = torch.randn(n, 2, generator=torch.Generator().manual_seed(start_seed))
    xi = torch.randn(n, 2, generator=torch.Generator().manual_seed(sampler_seed))  # the first Langevin proposal
    return float(torch.corrcoef(torch.stack([z0.flatten(), xi.flatten()]))[0, 1])


def test_starting_points_and_sampler_noise_are_independent_streams():
    """One seed for both streams (0.1) made the first proposal's noise equal the starting point:
    correlation 1, which the same check catches; independent streams give |r| within 4.5/sqrt(2n)."""
    n = 20000
    limit = 4.5 / math.sqrt(2 * n)
    assert abs(_start_noise_correlation(*stream_seeds(5))) < limit
    assert _start_noise_correlation(5, 5) > 0.999  # the 0.1 scheme
    # and refine() uses them: recover each chain's first Langevin noise from its first step
    # (E = |z|^2 / 2 + |z|^2 / 2 = |z|^2, grad 2 z: z1 = z0 - eps z0 + sqrt(eps) xi)
    m, eps = 4000, 0.25
    result = refine(nn.Identity(), Shifted(0.0), (2,), num_chains=m, sampler="langevin", steps=1, warmup=0,
                    adapt=False, eps=eps, seed=5, progress=False)
    xi = (result.z - (1 - eps) * result.z0) / math.sqrt(eps)
    assert abs(float(xi.std()) - 1.0) < 0.05  # it is the noise
    r = float(torch.corrcoef(torch.stack([result.z0.flatten(), xi.flatten()]))[0, 1])
    assert abs(r) < 4.5 / math.sqrt(2 * m)


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
    from latentmcmc.refinement import RefineOptions

    # messages name what was given (a user's trial: an R-hat rule with one chain, blocks with one stop rule)
    with pytest.raises(ValueError, match=r"until_rhat needs num_chains >= 2 .*got num_chains=1"):
        RefineOptions(num_chains=1, until_rhat=1.01)
    with pytest.raises(ValueError, match=r"^until_rhat ends each run at its own step"):
        RefineOptions(num_chains=100, until_rhat=1.01, block_size=50)
    with pytest.raises(ValueError, match=r"superchains must be an integer >= 2, got 1"):
        RefineOptions(num_chains=100, superchains=1)


def test_superchains_share_their_start_and_report_nested_rhat():
    result = refine(nn.Identity(), Shifted(0.0), (2,), num_chains=40, superchains=8, block_size=20, steps=10, warmup=10,
                    progress=False)
    z0 = result.z0.reshape(8, 5, 2)
    assert torch.equal(z0, z0[:, :1].expand(8, 5, 2)) and not torch.equal(z0[0, 0], z0[1, 0])
    m = result.metrics
    assert m["superchains"] == 8 and 0.9 < m["rhat_nested_energy"] < 2.0
    with pytest.raises(ValueError, match="divide num_chains"):
        refine(nn.Identity(), Shifted(0.0), (2,), num_chains=40, superchains=7, progress=False)
    with pytest.raises(ValueError, match="multiple of the superchain size"):
        refine(nn.Identity(), Shifted(0.0), (2,), num_chains=40, superchains=8, block_size=12, progress=False)


def test_monitor_every_sets_how_often_the_stop_rules_are_checked():
    """--monitor-every was ignored once a stop rule was given (every run checked every 50 steps)."""
    from latentmcmc.refinement import RefineOptions

    assert RefineOptions(until_rhat=1.05, monitor_every=7).until.check_every == 7
    assert RefineOptions(until_rhat=1.05, monitor_every=0).until.check_every == 50  # 0: display off, rules keep 50
    assert RefineOptions(min_ess=100).until.check_every == 50
    assert RefineOptions().until is None


def test_run_metrics_read_the_same_step_size_from_shared_and_copied_eps():
    """A fresh run's shared eps is an expanded (stride-0) tensor, a resumed run's a copy: float32 means of
    the two rounded differently, so a resumed report's eps_mean differed in its last digits."""
    import dataclasses

    from latentmcmc.refinement import run_metrics

    chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.3).run(torch.randn(1000, 2), steps=20, warmup=10, seed=0,
                                                                   record="last", progress=False)
    eps = torch.full((1000,), 0.33892035484313965).expand(1000, chains.eps.shape[1]) if chains.eps.dim() == 2 \
        else torch.tensor(0.33892035484313965).expand(1000)
    shared = dataclasses.replace(chains, eps=eps)
    copied = dataclasses.replace(chains, eps=eps.contiguous())
    assert run_metrics(shared, diagnostics=False)["eps_mean"] == run_metrics(copied, diagnostics=False)["eps_mean"]


def test_a_run_whose_chains_never_moved_is_unusable_and_shows_no_diagnostics():
    """Every proposal rejected (a target whose energy is 500 higher anywhere but at the start, z = (1, 1): a log
    acceptance ratio of about -500, not a divergence): each chain's draws are its start.  ArviZ's ESS of such chains
    is the total (500 of 20 x 10 here), which the report printed as if the run had mixed; the run is now unusable
    (exit 3 on the command line)."""
    from latentmcmc.refinement import run_metrics
    from latentmcmc.report import format_table

    def spike(z):
        return 0.5 * z.square().sum(1) + 500.0 * (z != 1).any(1)

    chains = MALA(spike, eps=0.5).run(torch.ones(20, 2), steps=10, adapt=False, seed=0, progress=False)
    metrics = run_metrics(chains)
    assert metrics["divergences"] == 0 and metrics["stuck_chains"] == 20
    assert metrics["unusable"] == "no chain moved in its 10 recorded draws (every proposal was rejected)"
    assert not any(key.startswith(("ess_", "rhat_")) for key in metrics)  # metrics.json once carried them
    table = format_table(metrics)
    assert "UNUSABLE: no chain moved" in table and "ESS bulk" not in table
    moving = run_metrics(MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5).run(torch.ones(20, 2), steps=10, seed=0,
                                                                              progress=False))
    assert moving["stuck_chains"] == 0 and "unusable" not in moving


def test_one_chain_reports_no_r_hat_rather_than_nan():
    from latentmcmc.refinement import run_metrics
    from latentmcmc.report import format_table

    chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5).run(torch.zeros(1, 2), steps=10, seed=0, progress=False)
    table = format_table(run_metrics(chains))
    assert "R-hat (energy / worst z)    n/a (one chain)" in table and "nan" not in table


def test_record_last_counts_the_steps_sampled_not_the_one_draw_kept():
    """With record="last" the table said 3.9 model passes per step for MALA (it divided by warm-up + 1 draw)."""
    from latentmcmc.refinement import run_metrics
    from latentmcmc.report import format_table

    chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5).run(torch.zeros(10, 2), steps=50, warmup=50, seed=0,
                                                                   record="last", progress=False)
    metrics = run_metrics(chains)
    assert metrics["steps"] == 50 and metrics["draws"] == 1
    table = format_table(metrics)
    assert "(2.0 per step)" in table and "50 steps sampled, the last kept" in table
