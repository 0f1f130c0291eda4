"""Refining a GAN trained elsewhere from the CLI: a flat-output generator and a discriminator ending in a
Sigmoid, exported with torch.export; the user's features, reference data and classifier; quality tracking;
and every bad input as one error line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latentmcmc.cli import main

pytest.importorskip("torchmetrics")


class FlatGenerator(nn.Module):
    """z (4) -> a flat 16-value 'image' (4x4) in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class SigmoidDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1), nn.Sigmoid())

    def forward(self, x):
        return self.net(x).squeeze(1)


class Features(nn.Module):
    def __init__(self, rank: int = 2):
        super().__init__()
        self.proj = nn.Linear(16, 6)
        self.rank = rank

    def forward(self, x):
        f = self.proj(x.reshape(x.shape[0], 16))
        return f if self.rank == 2 else f.unsqueeze(-1)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(x.reshape(x.shape[0], 16))


def export(module, example, path):
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},)), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gan")
    torch.manual_seed(0)
    out = {
        "g": export(FlatGenerator(), torch.randn(4, 4), folder / "g.pt2"),
        "d": export(SigmoidDiscriminator(), torch.randn(4, 16), folder / "d.pt2"),  # reads G's flat output
        "features": export(Features(), torch.randn(4, 1, 4, 4), folder / "features.pt2"),
        "bad_features": export(Features(rank=3), torch.randn(4, 1, 4, 4), folder / "bad_features.pt2"),
        "classifier": export(Classifier(), torch.randn(4, 1, 4, 4), folder / "classifier.pt2"),
    }
    np.savez(folder / "reference.npz", x=np.tanh(np.random.default_rng(0).standard_normal((300, 1, 4, 4))).astype(np.float32))
    np.savez(folder / "flat_reference.npz", x=np.zeros((300, 16), dtype=np.float32))  # flat rows of the right size
    np.savez(folder / "wrong_reference.npz", x=np.zeros((300, 25), dtype=np.float32))
    out["reference"], out["flat_reference"] = folder / "reference.npz", folder / "flat_reference.npz"
    out["wrong_reference"] = folder / "wrong_reference.npz"
    return out


def gan_args(files, *extra):
    return ["refine", "--generator", str(files["g"]), "--critic", str(files["d"]), "--latent-shape", "4",
            "--critic-output", "probability", "--data-shape", "1,4,4", "--chains", "60", "--steps", "12",
            "--warmup", "8", "-q", *map(str, extra)]


@pytest.mark.slow
def test_refine_a_sigmoid_gan_with_your_features_and_tracking(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(gan_args(files, "--features", files["features"], "--reference", files["reference"], "--classifier",
                         files["classifier"], "--track-every", "5", "--keep", "best", "--out", out))
    text, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["critic_output"] == "probability" and "Sigmoid removed (exact)" in metrics["critic_reading"]
    q = metrics["quality"]
    assert q["data"] == "features of features.pt2"
    assert set(q["after"]) == {"fd", "kid", "precision", "recall", "density", "coverage", "is"}
    assert "not Inception FIDs" in text
    rows = (out / "quality.csv").read_text().splitlines()
    assert rows[0].startswith("step,phase,fd") and len(rows) == 1 + 1 + 20 // 5  # prior + every 5 of 20 steps
    assert metrics["tracking"]["best_step"] in (0, 5, 10, 15, 20) and metrics["kept"] == "best"
    with np.load(out / "samples.npz") as s:
        assert s["x_after"].shape == (60, 1, 4, 4)  # viewed as the data's shape
    for name in ("samples.png", "quality.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_big_run_options_and_annealed_resampling(files, tmp_path, capsys):
    out = tmp_path / "big"
    assert main(gan_args(files, "--record", "last", "--no-run-nc", "--no-figures", "--out", out)) == 0
    assert not (out / "run.nc").exists() and (out / "samples.npz").exists()
    out = tmp_path / "annealed"
    assert main(gan_args(files, "--sampler", "annealed-mala", "--resample", "--no-figures", "--out", out)) == 0
    with np.load(out / "samples.npz") as s:
        assert s["weights"].shape == (60,) and abs(float(s["weights"].sum()) - 1) < 1e-9
    assert "resampled" in json.loads((out / "metrics.json").read_text())
    capsys.readouterr()


@pytest.mark.parametrize("extra,needle", [
    (["--features", "bad_features", "--reference", "reference"], "must return (n, d) features"),
    (["--features", "features", "--reference", "wrong_reference"],
     "has samples of shape (25,) (25 values) but the generator's samples have shape (1, 4, 4) (16 values)"),
    (["--data-shape", "1,5,5"], "data_shape (1, 5, 5) holds 25 values but the generator outputs 16"),
    (["--track-every", "-1"], "--track-every must be an integer >= 0"),
    (["--features", "features"], "--features and --reference go together"),
    (["--keep", "best"], "--keep best keeps the states at the best tracked step"),
    (["--track-every", "5"], "--track-every needs quality metrics"),
    (["--resample"], "resample needs an annealed sampler"),
])
def test_bad_inputs_are_one_error_line_and_write_nothing(files, tmp_path, capsys, extra, needle):
    extra = [str(files[e]) if e in files else e for e in extra]
    out = tmp_path / "out"
    code = main(gan_args(files, *extra, "--out", out))
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0].replace("--data-shape", "data_shape"), err
    assert not out.exists()


def test_a_sigmoid_critic_read_as_an_energy_warns(files, tmp_path, capsys):
    args = [a for a in gan_args(files, "--no-figures", "--out", tmp_path / "w") if a not in ("--critic-output",
                                                                                            "probability")]
    assert main(args) == 0
    assert "warning: the critic ends in a Sigmoid" in capsys.readouterr().err
