"""Fused blocks (K steps compiled as one graph) give the eager run's states to rounding, warm-up included."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentmcmc import HMC, MALA, AnnealedMALA, LatentEnergy
from latentmcmc.samplers import Until
from latentmcmc.samplers.fused import (
    AUTO_MIN_CHAIN_STEPS,
    AUTO_MIN_STEPS,
    AUTO_MIN_STEPS_CUDA,
    auto_fuses,
    resolve_fuse,
)

pytestmark = pytest.mark.slow  # each compiles a graph (seconds)


def energy64() -> LatentEnergy:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 8)).double()
    critic = nn.Sequential(nn.Linear(8, 32), nn.Softplus(), nn.Linear(32, 1)).double()
    return LatentEnergy(generator, critic, beta=2.0)


def start(chains: int = 64) -> torch.Tensor:
    return torch.randn(chains, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def mala():
    """One sampler for several tests: its compiled blocks are reused (compiling takes seconds)."""
    return MALA(energy64(), eps=0.05)


def assert_same_run(fused, eager, atol=1e-10):
    rtol_eps = max(atol, 1e-10)
    # same noise and the same accept decisions: in float64 no decision sits within rounding of the boundary here
    assert torch.equal(fused.draws != fused.draws.roll(1, 1), eager.draws != eager.draws.roll(1, 1))
    torch.testing.assert_close(fused.draws, eager.draws, rtol=0, atol=atol)
    torch.testing.assert_close(fused.energy, eager.energy, rtol=0, atol=atol)
    torch.testing.assert_close(fused.eps, eager.eps, rtol=rtol_eps, atol=0)
    torch.testing.assert_close(fused.acceptance_rate, eager.acceptance_rate, rtol=0, atol=max(atol, 1e-12))
    assert torch.equal(fused.divergences, eager.divergences)


# Fused = eager with adaptation, thinning and a recorded warm-up, for every sampler of the table: the
# conformance suite (tests/samplers/test_conformance.py).


def test_fused_hmc_without_adaptation_equals_eager_to_rounding():
    sampler, z0 = HMC(energy64(), eps=0.1, leapfrog_steps=2), start()
    eager = sampler.run(z0, steps=40, seed=1, progress=False)
    fused = sampler.run(z0, steps=40, seed=1, progress=False, fuse=2)
    assert_same_run(fused, eager, 1e-10)


def test_blocks_stop_at_warmup_end_checkpoints_and_leave_the_rest_eager(mala):
    """Warm-up 13, steps 22, block 5, checkpoints every 7: blocks never cross a boundary; resuming is exact."""
    sampler, z0 = mala, start()
    saved = []
    kwargs = dict(steps=22, warmup=13, seed=2, progress=False, fuse=5)
    whole = sampler.run(z0, **kwargs, checkpoint=saved.append, checkpoint_every=7)
    assert 0 < whole.extra["fused_steps"] < 35  # some steps ran eagerly between boundaries
    eager = sampler.run(z0, steps=22, warmup=13, seed=2, progress=False)
    assert_same_run(whole, eager)
    resumed = sampler.run(z0, **kwargs, checkpoint=saved.append, checkpoint_every=7, resume=saved[2])
    assert torch.equal(resumed.draws, whole.draws) and torch.equal(resumed.eps, whole.eps)


def test_annealed_sampler_fuses_only_at_the_target_and_keeps_its_weights():
    sampler, z0 = AnnealedMALA(energy64(), eps=0.05), start()
    eager = sampler.run(z0, steps=30, warmup=20, seed=4, progress=False)
    fused = sampler.run(z0, steps=30, warmup=20, seed=4, progress=False, fuse=5)
    assert fused.extra["fused_steps"] == 25  # the first recorded step still adds the last AIS increment
    assert_same_run(fused, eager)
    torch.testing.assert_close(fused.log_weights, eager.log_weights, rtol=0, atol=1e-10)


def test_stop_rules_end_a_fused_run_at_the_same_check(mala):
    sampler, z0 = mala, start()
    until = Until(rhat=1.5, check_every=10)
    eager = sampler.run(z0, steps=200, warmup=20, seed=5, progress=False, until=until)
    fused = sampler.run(z0, steps=200, warmup=20, seed=5, progress=False, until=until, fuse=5)
    assert fused.extra["stopped_by"] == eager.extra["stopped_by"]
    assert fused.num_draws == eager.num_draws < 200


def test_auto_rule_is_decided_by_sizes_and_keeps_small_runs_eager(mala):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not auto_fuses(1000, 1000, cpu)  # 1e6 chain-steps: compiling would not pay
    assert auto_fuses(AUTO_MIN_CHAIN_STEPS // AUTO_MIN_STEPS, AUTO_MIN_STEPS, cpu)
    assert not auto_fuses(10**9, AUTO_MIN_STEPS - 1, cpu)
    assert not auto_fuses(10**6, 1000, cuda)  # on a GPU the steps decide (launch-bound eager steps)
    assert auto_fuses(64, AUTO_MIN_STEPS_CUDA, cuda) and not auto_fuses(10**6, AUTO_MIN_STEPS_CUDA - 1, cuda)
    assert auto_fuses(1000, 1000, cpu, flops=3.5e8)  # a DCGAN-size model repays compiling much sooner
    assert not auto_fuses(1000, 1000, cpu, flops=7.4e4)
    run = mala.run(start(), steps=10, seed=0, progress=False, fuse="auto")
    assert run.extra["fused_steps"] == 0
    for bad in (1, 0, "fast", 2.5):
        with pytest.raises(ValueError, match="fuse must be"):
            resolve_fuse(bad)
