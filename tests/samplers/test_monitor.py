"""The online monitor: a bounded summary whose R-hat and ESS agree with the full history's.

On AR(1) chains the ESS of the mean is known exactly, ``n (1 - rho) / (1 + rho)`` per chain; the monitor's
ESS and the full-history ``ess(method="mean")`` must both meet it within their Monte Carlo error, which
is measured from independent groups of chains.  The monitor's R-hat is the split R-hat of the complete
batches' draws, which ``rhat(method="split")`` computes from the draws themselves.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from helpers.mc import z_threshold

from latentmcmc.diagnostics import ess, rhat
from latentmcmc.samplers.kernel import SamplerState
from latentmcmc.samplers.monitor import BATCHES, Monitor, Until

RHOS = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64)  # the energy and two coordinates


def ar1(chains: int, steps: int, seed: int, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``(chains, steps, 3)`` stationary AR(1) series with unit variance and lag-one correlations RHOS."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(chains, steps, 3, generator=g, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0]
    scale = torch.sqrt(1 - RHOS**2)
    for t in range(1, steps):
        x[:, t] = RHOS * x[:, t - 1] + scale * noise[:, t]
    return x if shift is None else x + shift[:, None, None]


def monitored(x: torch.Tensor, until: Until | None = None, block: int = 16) -> Monitor:
    chains, steps, _ = x.shape
    state = SamplerState(torch.zeros(chains, 2, dtype=torch.float64), torch.zeros(chains, dtype=torch.float64), None,
                         torch.zeros(chains, dtype=torch.bool))
    monitor = Monitor(state, steps, until, check_every=50)
    for start in range(0, steps, block):
        rows = x[:, start:start + block].transpose(0, 1)  # (k, chains, 3)
        monitor.record_block(SimpleNamespace(energy=rows[..., 0], z=rows[..., 1:]))
    return monitor


@pytest.mark.parametrize("latent_shape", [(2,), (1, 2)])
def test_steps_one_at_a_time_and_in_blocks_give_the_same_summary(latent_shape):
    """An eager step (one slot, no loop) and a fused block of steps fill the same buffers."""
    x = ar1(8, 200, seed=3)

    def run(block: int) -> Monitor:
        state = SamplerState(torch.zeros(8, *latent_shape, dtype=torch.float64), torch.zeros(8, dtype=torch.float64),
                             None, torch.zeros(8, dtype=torch.bool))
        monitor = Monitor(state, 200, None, check_every=50)
        for start in range(0, 200, block):
            rows = x[:, start:start + block].transpose(0, 1)
            monitor.record_block(SimpleNamespace(energy=rows[..., 0], z=rows[..., 1:].reshape(-1, 8, *latent_shape)))
        return monitor

    one, blocks = run(1), run(40)
    for a, b in ((one.statistics(), blocks.statistics()), ((one.sums, one.squares), (blocks.sums, blocks.squares))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert one.count == blocks.count == 200


def test_r_hat_is_the_split_r_hat_of_the_draws_it_summarises():
    x = ar1(64, 2048, seed=0, shift=torch.linspace(0, 2.0, 64, dtype=torch.float64))  # chains that disagree
    monitor = monitored(x)
    r, _ = monitor.statistics()
    n = monitor.batches * monitor.batch
    assert monitor.batches % 2 == 0 and n == 2048
    torch.testing.assert_close(r, rhat(x[:, :n], method="split").reshape(-1), rtol=1e-10, atol=0)
    assert float(r.min()) > 1.05  # and it sees the disagreement


@pytest.mark.parametrize("steps", [512, 4096])  # batches of 8 or 16 draws (shorter than rho 0.9's 19), and 64
@pytest.mark.slow
def test_ess_of_ar1_chains_agrees_with_the_truth_and_the_full_history(steps):
    groups, per_group = 16, 16
    x = ar1(groups * per_group, steps, seed=1)
    truth = groups * per_group * steps * (1 - RHOS) / (1 + RHOS)
    online = torch.stack([monitored(x[g * per_group:(g + 1) * per_group]).statistics()[1] for g in range(groups)])
    full = torch.stack([ess(x[g * per_group:(g + 1) * per_group], method="mean").reshape(-1) for g in range(groups)])
    limit = z_threshold(2 * len(RHOS))
    for name, per_group_ess in (("online", online), ("full history", full)):
        total = per_group_ess.sum(0)  # ESS adds over independent chains
        se = per_group_ess.std(0) * math.sqrt(groups)  # the Monte Carlo error of that sum, from the groups
        z = (total - truth) / se
        assert float(z.abs().max()) < limit, (name, total, truth, z)
    # all 256 chains at once: the ESS from the spread of the chain means across chains, whose relative error is
    # that of a sample variance of 256 normal values, sqrt(2 / 255)
    whole = monitored(x).statistics()[1]
    z = (whole / truth - 1) / math.sqrt(2 / 255)
    assert float(z.abs().max()) < limit, (whole, truth, z)


@pytest.mark.slow
def test_the_summary_stays_the_same_size_at_any_length():
    short, long = monitored(ar1(8, 1000, seed=2)), monitored(ar1(8, 50_000, seed=2), block=500)
    assert short.sums.shape == long.sums.shape == (2 * BATCHES, 8, 3)
    assert BATCHES <= long.batches < 2 * BATCHES and long.batch * long.batches <= 50_000


@pytest.mark.parametrize("steps", [1_000, 100_000])
def test_checks_space_out_as_the_run_grows(steps):
    state = SamplerState(torch.zeros(4, 2), torch.zeros(4), None, torch.zeros(4, dtype=torch.bool))
    monitor = Monitor(state, steps, Until(rhat=1.0001, check_every=50), 0)
    rows = SimpleNamespace(energy=torch.zeros(1, 4), z=torch.zeros(1, 4, 2))
    checks = 0
    for _ in range(steps):
        monitor.count += 1  # the cadence only: no data needed
        if monitor.due():
            monitor._schedule_next()
            checks += 1
    decades = math.log10(steps / 500)  # after ten checks at every 50 steps: at most about 24 per tenfold length
    assert 10 < checks <= 10 + 24.2 * decades + 1, checks
    assert rows.energy.shape == (1, 4)
