"""2 CPU processes (torchrun, Gloo): sharded chains equal one process with the same blocks and seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch.distributed as dist
from helpers.processes import torchrun

from latentmcmc.cli import main

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs Gloo"),
              pytest.mark.slow]

REFINE = ["--chains", "40", "--steps", "12", "--warmup", "10", "--no-figures", "-q", "--seed", "5"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "ring.pt"
    assert main(["train", "--data", "ring8", "--steps", "3", "--width", "16", "--batch-size", "32",
                 "--critic-steps", "1", "-q", "--out", str(path)]) == 0
    return path


def test_two_gloo_ranks_give_the_one_process_result(ckpt, tmp_path):
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    torchrun("-m", "latentmcmc", "refine", str(ckpt), *REFINE, "--out", str(sharded))
    # one process, the same blocks: 40 chains / 2 ranks = blocks of 20
    assert main(["refine", str(ckpt), *REFINE, "--block-size", "20", "--out", str(single)]) == 0
    a, b = np.load(sharded / "samples.npz"), np.load(single / "samples.npz")
    for key in ("z0", "z", "x_before", "x_after"):
        np.testing.assert_array_equal(a[key], b[key])
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (sharded, single))
    assert ma["world_size"] == 2 and ma["blocks"] == mb["blocks"] == 2
    for key in ("acceptance", "eps_mean", "ess_bulk_energy", "ess_tail_energy", "rhat_energy", "ess_bulk_z_min",
                "rhat_z_max"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-12, abs=1e-12), key
    # and the blocks really were different runs (different seeds, different adapted step sizes)
    assert not np.array_equal(a["z"][:20], a["z"][20:])
