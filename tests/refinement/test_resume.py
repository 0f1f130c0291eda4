"""A refine killed with SIGKILL (in warm-up, in sampling, between blocks) and rerun with --resume writes exactly
the outputs of an uninterrupted run; a resume with other arguments or without a saved state is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmcmc import Chains
from latentmcmc.refinement import KILL_AFTER_CHECKPOINT

pytestmark = pytest.mark.slow

CKPT = str(Path(__file__).resolve().parents[2] / "latentmcmc" / "assets" / "demo_gaussians25.pt")
# 2 blocks of 32 chains, 20 warm-up + 30 steps each, a checkpoint every 5 steps and after each block:
# checkpoints 1-4 at block 0's steps 5-20 (warm-up), 5-9 at its steps 25-45 (sampling), 10 between the
# blocks, 11+ in block 1
ARGS = ["refine", CKPT, "--chains", "64", "--block-size", "32", "--record-blocks", "1", "--steps", "30", "--warmup",
        "20", "--beta", "3", "--keep-warmup", "--no-figures", "-q", "--checkpoint-every", "5"]


def cli(out: Path, *extra: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_AFTER_CHECKPOINT: str(kill_after)}
    return subprocess.run([sys.executable, "-m", "latentmcmc", *ARGS, *extra, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    assert cli(out).returncode == 0
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    x, y = np.load(a / "samples.npz"), np.load(b / "samples.npz")
    assert x.files == y.files
    for key in x.files:
        np.testing.assert_array_equal(x[key], y[key])
    ca, cb = Chains.load(a / "run.nc"), Chains.load(b / "run.nc")
    for name in ("draws", "energy", "accept_prob", "eps", "warmup_draws", "warmup_eps", "acceptance_rate",
                 "divergences"):
        assert torch.equal(getattr(ca, name), getattr(cb, name)), name
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    ma.pop("seconds"), mb.pop("seconds")  # timing: the only field that may differ
    assert ma == mb


@pytest.mark.parametrize("kill_after,where", [(2, "warm-up"), (7, "sampling"), (10, "between blocks"),
                                              (14, "second block")])
def test_sigkill_then_resume_writes_the_uninterrupted_outputs(kill_after, where, uninterrupted, tmp_path):
    out = tmp_path / "out"
    killed = cli(out, kill_after=kill_after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-500:]
    assert (out / ".latentmcmc-resume.pt").exists() and not (out / "samples.npz").exists()
    resumed = cli(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    assert_same_outputs(uninterrupted, out)
    assert not (out / ".latentmcmc-resume.pt").exists()  # the state goes once the outputs are written
    assert "resumed" in (out / "resume.log").read_text()


def test_resume_is_refused_with_other_arguments_or_no_state(tmp_path):
    out = tmp_path / "out"
    assert cli(out, kill_after=3).returncode == -signal.SIGKILL
    other = subprocess.run([sys.executable, "-m", "latentmcmc", *ARGS[:-2], "--checkpoint-every", "5", "--steps", "40",
                            "--resume", "--out", str(out)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "--steps 30, not 40" in other.stderr
    fresh = cli(tmp_path / "fresh", "--resume")
    assert fresh.returncode == 2 and "no saved run state" in fresh.stderr
