"""2 CPU processes (torchrun, Gloo): DistributedDataParallel training equals one process training on the
same global batches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers.processes import torchrun

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs Gloo"),
              pytest.mark.slow]


@pytest.mark.parametrize("entropy", ["encoder", "none"])
def test_ddp_gradients_on_two_ranks_equal_one_process(entropy, tmp_path):
    """Each rank takes half of the same global batch and DDP averages the gradients: the gradients
    of every network (the critic's through the double backward of the gradient penalty) equal one
    process's on the whole batch, up to the rounding of the all-reduce.  (Parameters after Adam
    steps are no test: Adam turns rounding-level gradients into steps of up to lr.)  The
    Deep-InfoMax shuffle pairs latents within a rank's half, so ``dim`` is not compared."""
    script = str(Path(__file__).with_name("ddp_gradients.py"))
    torchrun(script, str(tmp_path / "ddp.pt"), entropy)
    proc = subprocess.run([sys.executable, script, str(tmp_path / "one.pt"), entropy], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp, one = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "one.pt")
    assert ddp.keys() == one.keys() and any(k.startswith("critic.") for k in one)
    for key, grad in one.items():
        assert grad is not None and float(grad.abs().max()) > 0 or key.endswith("net.6.bias"), key
        # float32 sums of 16 vs 32 terms: differences of a few ulps of the largest gradient (~0.1)
        torch.testing.assert_close(ddp[key], grad, rtol=0, atol=1e-6, msg=key)


def test_ddp_training_under_torchrun_writes_one_checkpoint(tmp_path):
    from latentmcmc.checkpoint import load_checkpoint

    torchrun("-m", "latentmcmc", "train", "--data", "ring8", "--steps", "3", "--width", "16", "--batch-size", "32",
             "--critic-steps", "1", "-q", "--out", str(tmp_path / "ddp.pt"))
    assert load_checkpoint(tmp_path / "ddp.pt")["step"] == 3
    # an odd global batch cannot be split over 2 ranks: a clear error
    proc = torchrun("-m", "latentmcmc", "train", "--data", "ring8", "--steps", "1", "--batch-size", "33", "-q",
                    "--out", str(tmp_path / "x.pt"), check=False)
    assert proc.returncode != 0 and "error: batch_size=33 must be divisible by the 2 processes" in proc.stderr
    assert not (tmp_path / "x.pt").exists()
