"""A critic fitted after the fact: on a 2-D case with known truth it turns a fixed, imperfect generator's latent
target into the data distribution; it warns when it separates too well; the command writes what it says."""

from __future__ import annotations

import gzip
import json
import math
import struct
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from latentmcmc import ISIR, LatentEnergy
from latentmcmc.cli import main
from latentmcmc.exact import grid_target, total_variation, tv_noise_floor
from latentmcmc.fit_critic import fit_critic

CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.5]])
WEIGHTS = torch.tensor([0.7, 0.3])


def data_energy(x: torch.Tensor) -> torch.Tensor:
    """``-log p_data``: a 2-D mixture (weights 0.7 / 0.3, sd 0.5)."""
    sq = (x[:, None, :] - CENTRES.to(x.dtype)).square().sum(-1) / (2 * 0.25)
    return -torch.logsumexp(torch.log(WEIGHTS.to(x.dtype)) - sq, 1)


def data_draws(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    which = (torch.rand(n, generator=g) < WEIGHTS[1]).long()
    return CENTRES[which] + 0.5 * torch.randn(n, 2, generator=g)


def cell(x: torch.Tensor) -> torch.Tensor:
    """Index of each point's cell in a 16 x 16 grid over [-4, 4]^2."""
    ij = ((x + 4) / 8 * 16).floor().long().clamp(0, 15)
    return ij[:, 0] * 16 + ij[:, 1]


def binned(grid) -> torch.Tensor:
    return torch.zeros(256, dtype=torch.float64).index_add_(0, cell(grid.points), grid.probs)


@pytest.mark.slow
def test_a_fitted_critic_moves_a_fixed_generator_s_samples_to_the_data():
    """G = identity (samples N(0, I)), data = a mixture: E(z) = -logit(G(z)) + |z|^2/2 targets the mixture.

    The refined samples' binned TV to the truth must be within the fitted target's own TV (the fit's error,
    integrated on a grid) plus the 95th percentile of exact sampling's TV from the fitted target (Monte Carlo
    error), and far below the prior samples'."""
    fitted = fit_critic(nn.Identity(), data_draws(20_000, seed=0), (2,), steps=1000, width=128, seed=0, progress=False)
    energy = LatentEnergy(nn.Identity(), fitted.critic, critic_output="logit")
    truth = binned(grid_target(lambda z: data_energy(z.double()).float(), points_per_axis=401))
    target = binned(grid_target(energy, points_per_axis=401))
    fit_error = total_variation(target, truth)
    z0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    chains = ISIR(energy, candidates=20).run(z0, steps=100, seed=2, record="last", progress=False)
    counts = lambda x: torch.bincount(cell(x), minlength=256).double()  # noqa: E731
    refined, prior = total_variation(counts(chains.last), truth), total_variation(counts(z0), truth)
    floor95 = tv_noise_floor(target, 2000)[1]
    assert fit_error < 0.15, fitted.report["held_out"]  # the fit itself is close (the held-out loss says so too)
    assert refined <= fit_error + floor95, (refined, fit_error, floor95)
    assert prior > 3 * refined, (prior, refined)


@pytest.mark.slow
def test_a_critic_that_separates_perfectly_warns():
    far = lambda z: z + 20.0  # noqa: E731 - a generator whose samples are nowhere near the data
    with pytest.warns(UserWarning, match="separates real from generated samples almost perfectly"):
        fitted = fit_critic(far, torch.randn(500, 2), (2,), steps=200, eval_every=20, seed=0, progress=False)
    assert fitted.report["held_out"]["accuracy"] >= 0.98 and fitted.report["warnings"]


def test_too_few_samples_left_to_train_on_are_flagged():
    """--holdout 0.999 trained the critic on 2 samples (batch 2) and kept its untrained start, without a word."""
    with pytest.warns(UserWarning, match="only 2 real samples left to train on"):
        fitted = fit_critic(nn.Identity(), torch.randn(1000, 2), (2,), holdout=0.998, steps=20, eval_every=10, seed=0,
                            progress=False)
    assert fitted.report["batch_size"] == 2 and fitted.report["warnings"]


def test_too_few_held_out_samples_are_flagged():
    """A tiny holdout left one or two samples to judge the critic and stop on, and said nothing."""
    with pytest.warns(UserWarning, match="only 3 real samples held out"):
        fitted = fit_critic(nn.Identity(), torch.randn(300, 2), (2,), holdout=0.01, steps=20, eval_every=10, seed=0,
                            progress=False)
    held = fitted.report["held_out"]
    assert held["real"] == 3 and any("too few samples" in w for w in fitted.report["warnings"])
    k, n = held["accuracy"] * 6, 6  # Agresti-Coull: never 0, also at accuracy 0 or 1
    assert held["accuracy_stderr"] == pytest.approx(math.sqrt((k + 2) / (n + 4) * (1 - (k + 2) / (n + 4)) / (n + 4)))
    assert not any("almost perfectly" in w for w in fitted.report["warnings"])  # too few to judge that either
    from latentmcmc.fit_critic import accuracy_stderr

    assert accuracy_stderr(1.0, 4) > 0.1 and accuracy_stderr(1.0, 10_000) < 0.001


def test_early_stopping_keeps_the_best_held_out_critic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fit_critic(nn.Identity(), torch.randn(300, 2), (2,), steps=2000, eval_every=10, patience=3, seed=0,
                            progress=False)
    report = fitted.report
    assert report["early_stopped"] and report["steps_run"] < 2000  # the same law: nothing to learn, it stops
    assert report["step"] == min(report["history"], key=lambda h: h["log_loss"])["step"]
    assert set(report["held_out"]) >= {"accuracy", "log_loss", "calibration_error"}
    assert abs(report["held_out"]["accuracy"] - 0.5) < 0.2


class ExactLogit(nn.Module):
    """``log p_data(x) - log N(x; 0, I)`` (the optimal critic for the identity generator) times a trainable scale."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * (-data_energy(x) + 0.5 * x.square().sum(1) + math.log(4.0))  # components' sd 0.5


def test_fine_tuning_never_keeps_a_critic_worse_than_the_given_one():
    """An optimal critic given as ``init`` and a learning rate that can only spoil it: the fit keeps step 0."""
    fitted = fit_critic(nn.Identity(), data_draws(4000, seed=0), (2,), init=ExactLogit(), init_output="logit",
                        steps=3, eval_every=1, lr=5.0, seed=0, progress=False)
    report = fitted.report
    assert report["history"][0]["step"] == 0 and report["step"] == 0, report["history"]
    assert report["held_out"]["log_loss"] == report["held_out_at_start"]["log_loss"]
    assert all(h["log_loss"] > report["held_out"]["log_loss"] for h in report["history"][1:])


def test_platt_scaling_restores_a_mis_scaled_log_density_ratio():
    """The exact log ratio times 0.3, kept as it is (one step at lr 1e-9): Platt scaling on the held-out samples
    finds slope 1 / 0.3 and intercept 0 within 4 standard errors (the two-parameter logistic fit's Fisher
    information at the truth, on as many fresh samples as were held out)."""
    init = ExactLogit()
    init.scale.data.fill_(0.3)
    fitted = fit_critic(nn.Identity(), data_draws(20_000, seed=3), (2,), init=init, init_output="logit", steps=1,
                        lr=1e-9, holdout=0.5, calibrate=True, seed=0, progress=False)
    scaling, n = fitted.report["platt_scaling"], 10_000
    x = torch.cat([data_draws(n, seed=4), torch.randn(n, 2, generator=torch.Generator().manual_seed(5))]).double()
    score = 0.3 * (-data_energy(x) + 0.5 * x.square().sum(1) + math.log(4.0))
    p = torch.sigmoid(score / 0.3)
    design = torch.stack([score, torch.ones_like(score)], 1)
    cov = torch.linalg.inv((design * (p * (1 - p))[:, None]).T @ design)
    assert abs(scaling["slope"] - 1 / 0.3) < 4 * cov[0, 0].sqrt(), (scaling, cov.diagonal().sqrt())
    assert abs(scaling["intercept"]) < 4 * cov[1, 1].sqrt(), (scaling, cov.diagonal().sqrt())
    assert fitted.report["held_out"]["log_loss"] < scaling["log_loss_before"]
    plain = fit_critic(nn.Identity(), data_draws(20_000, seed=3), (2,), init=init, init_output="logit", steps=1,
                       lr=1e-9, holdout=0.5, seed=0, progress=False)  # measured, not applied (the default)
    assert plain.report["platt_scaling"]["slope"] == scaling["slope"] and not plain.report["platt_scaling"]["applied"]
    assert plain.report["held_out"]["log_loss"] == scaling["log_loss_before"]


# ---------------------------------------------------------------------- the command
class ImageGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 64), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).reshape(-1, 1, 8, 8)  # pixels in [0, 1], as most VAEs


def write_idx(path, images: np.ndarray) -> None:
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">III", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + images.tobytes())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    g = folder / "g.pt2"
    torch.export.save(torch.export.export(ImageGenerator().eval(), (torch.randn(3, 4),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), g)
    rng = np.random.default_rng(0)
    images = (rng.random((400, 8, 8)) ** 2 * 255).astype(np.uint8)  # darker than the generator's images
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "small-images-idx3-ubyte.gz", images[:, :7, :7].copy())
    np.save(folder / "nan.npy", np.full((10, 64), np.nan, dtype=np.float32))
    flat_d = folder / "flat_d.pt2"  # a discriminator of flat 64-vectors: not the generator's (1, 8, 8) images
    torch.export.save(torch.export.export(nn.Sequential(nn.Linear(64, 1), nn.Sigmoid()).eval(), (torch.randn(3, 64),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), flat_d)
    return {"g": g, "real": folder / "train-images-idx3-ubyte.gz", "small": folder / "small-images-idx3-ubyte.gz",
            "nan": folder / "nan.npy", "flat_d": flat_d, "folder": folder}


def test_real_data_outside_the_generators_range_is_warned_about(files, tmp_path, capsys):
    """Float data in [-1, 1] beside a generator of [0, 1] pixels: the critic separates them by range alone (accuracy
    1.000), and only the 'separates almost perfectly' warning, which does not say why, came out."""
    real = tmp_path / "pm1.npy"
    np.save(real, np.random.default_rng(0).uniform(-1, 1, (300, 1, 8, 8)).astype(np.float32))
    code = main(["fit-critic", "--generator", str(files["g"]), "--latent-shape", "4", "--real", str(real), "--steps",
                 "2", "-q", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 0 and "spans [-1, 1] but the generator's samples [" in err and "(pixel range [0, 1])" in err, err
    assert "range alone" in json.loads((tmp_path / "x" / "fit.json").read_text())["warnings"][0]
    inside = tmp_path / "inside.npy"
    np.save(inside, np.random.default_rng(0).uniform(0, 1, (300, 1, 8, 8)).astype(np.float32))
    main(["fit-critic", "--generator", str(files["g"]), "--latent-shape", "4", "--real", str(inside), "--steps", "2",
          "-q", "--out", str(tmp_path / "y")])
    assert "range alone" not in capsys.readouterr().err
    from latentmcmc.cli.fit_critic import range_mismatch

    tanh_samples = torch.tensor([-0.98, 0.99])  # [0, 1] data beside a tanh generator: inside its range, half of it
    assert "range alone" in range_mismatch(torch.tensor([0.0, 1.0]), tanh_samples, (-1.0, 1.0), "--real x")
    assert range_mismatch(torch.tensor([-1.0, 1.0]), tanh_samples, (-1.0, 1.0), "--real x") is None


@pytest.mark.slow
def test_fit_critic_writes_an_exported_logit_critic_and_its_report(files, tmp_path, capsys):
    out = tmp_path / "critic"
    code = main(["--threads", "1", "fit-critic", "--generator", str(files["g"]), "--latent-shape", "4", "--real",
                 str(files["real"]), "--steps", "60", "-q", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "held-out accuracy" in printed.out and "wrote" in printed.out
    report = json.loads((out / "fit.json").read_text())
    assert report["data_range"] == [0.0, 1.0] and report["data_shape"] == [1, 8, 8]
    assert report["critic"].startswith("convolutional") and {"data_fingerprint", "generator_fingerprint"} <= set(report)
    from latentmcmc.io.torch_export import load_exported

    critic = load_exported(out / "critic.pt2", torch.device("cpu"), name="critic")
    assert critic(torch.rand(5, 1, 8, 8)).shape == (5,)
    code = main(["refine", "--generator", str(files["g"]), "--critic", str(out / "critic.pt2"), "--critic-output",
                 "logit", "--latent-shape", "4", "--chains", "20", "--steps", "4", "--warmup", "2", "-q", "--out",
                 str(tmp_path / "refined")])
    assert code == 0


@pytest.mark.parametrize("real, extra, needle", [
    ("small", [], "has samples of shape (1, 7, 7) (49 values) but the generator's samples have shape (1, 8, 8)"),
    ("nan", [], "NaN or infinite values"),
    ("missing", [], "no data at"),
    ("real", ["--latent-shape", "5"], "latent shape (5,) does not fit the generator, which takes latents of shape (4,)"),
    ("real", ["--init", "flat_d"], "does not take samples of shape (1, 8, 8): "),
    ("real", ["--holdout", "0.999"], "holdout 0.999 of 400 real samples leaves 0 to train on"),
    ("real", ["--holdout", "1.5"], "--holdout must be in (0, 1)"),
])
def test_fit_critic_refuses_bad_input_in_one_line(files, tmp_path, capsys, real, extra, needle):
    path = files.get(real, files["folder"] / "missing.npz")
    extra = [str(files[a]) if a in files else a for a in extra]
    code = main(["fit-critic", "--generator", str(files["g"]), "--latent-shape", "4", "--real", str(path), *extra,
                 "--steps", "5", "-q", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_compare_fits_a_critic_once_and_runs_every_method_on_it(files, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["--threads", "1", "compare", "--generator", str(files["g"]), "--latent-shape", "4", "--fit-critic",
                 str(files["real"]), "--methods", "prior,mala", "--budget", "10", "--chains", "30", "--beta", "1", "-q",
                 "--no-figures", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "fitted a critic on" in printed.err and "held-out accuracy" in printed.err
    result = json.loads((out / "compare.json").read_text())
    assert list(result["methods"]) == ["prior", "mala"] and result["methods"]["mala"]["passes"] > 0
    # the MH-GAN/DRS/DOT critic is calibrated too (it once said "no real data"), by the Platt scaling fit-critic
    # fitted on its held-out samples (not on all the data, most of which trained the critic)
    assert result["settings"]["calibrated"] is True and "uncalibrated" not in printed.out
    fit = json.loads((out / "fit.json").read_text())
    assert result["settings"]["calibration_slope"] == fit["platt_scaling"]["slope"]
    assert fit["platt_scaling"]["slope"] > 0 and (out / "critic.pt2").exists()
    code = main(["compare", "--generator", str(files["g"]), "--critic", str(out / "critic.pt2"), "--latent-shape", "4",
                 "--fit-critic", str(files["real"]), "--out", str(tmp_path / "both")])
    assert code == 2 and "--fit-critic fits the critic" in capsys.readouterr().err
