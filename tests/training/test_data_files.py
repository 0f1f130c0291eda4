"""Training on the user's files: the reader, the convolutional recipe chosen by shape, held-out measures, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentmcmc import LatentEnergy
from latentmcmc.cli import main
from latentmcmc.training import TrainConfig, Trainer
from latentmcmc.training.data import SHAPE_RECIPES, shape_recipe
from latentmcmc.training.networks import ConvCritic, ConvGenerator, conv_fits

TINY = dict(width=8, batch_size=16, critic_steps=1)


def images(tmp_path, n=80, shape=(1, 8, 8), seed=0, name="x.npz"):
    """Tiny synthetic uint8 images (a bright square at a random place on noise)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, *shape)) * 60).astype(np.uint8)
    for i in range(n):
        r, c = rng.integers(0, shape[1] - 3, 2)
        x[i, :, r:r + 3, c:c + 3] = 250
    path = tmp_path / name
    np.savez(path, x=x)
    return path


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 12, 12), (1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_the_convolutional_networks_fit_every_image_size_and_keep_chains_apart(shape):
    assert conv_fits(shape) and shape_recipe(shape)[0] == "images"
    g, c = ConvGenerator(16, shape, 8), ConvCritic(shape, 8)
    x = g.eval()(torch.randn(3, 16))
    assert x.shape == (3, *shape) and c(x).shape == (3,)
    LatentEnergy(g, c, latent_shape=(16,))  # eval mode: batch norm uses its running statistics
    from latentmcmc.energy import as_target

    as_target(LatentEnergy(g, c)).check_independent_chains(torch.randn(4, 16))  # raises if chains were coupled


def test_other_shapes_take_the_mlp_recipe():
    for shape in [(64,), (2, 8, 8), (1, 8, 10), (1, 7, 7)]:
        assert not conv_fits(shape) and shape_recipe(shape)[0] == "other"
    assert list(SHAPE_RECIPES) == ["images", "other"]


def test_a_file_trains_with_the_image_recipe_and_resumes_exactly(tmp_path):
    path = images(tmp_path)
    cfg = TrainConfig(data=str(path), seed=1, **TINY)
    straight = Trainer(cfg)
    assert straight.config.arch == "conv" and straight.config.latent_dim == 64
    assert straight.dataset.x.shape == (72, 1, 8, 8) and straight.dataset.held_out.shape == (8, 1, 8, 8)
    assert float(straight.dataset.x.min()) >= -1 and float(straight.dataset.x.max()) <= 1
    straight.train(4, progress=False)
    first = Trainer(cfg)
    first.train(2, tmp_path / "c.pt", progress=False)
    resumed = Trainer.resume(tmp_path / "c.pt")
    assert resumed.config.data_fingerprint == straight.config.data_fingerprint is not None
    resumed.train(4, progress=False)
    assert resumed.history == straight.history
    images(tmp_path, seed=5)  # the file changes under the checkpoint
    with pytest.raises(ValueError, match="not what this run trained on"):
        Trainer.resume(tmp_path / "c.pt")


def test_held_out_features_are_measured_along_training(tmp_path):
    path = images(tmp_path, n=120)
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(extractor, (torch.randn(4, 1, 8, 8),), dynamic_shapes=({0: batch},)),
                      tmp_path / "f.pt2")
    trainer = Trainer(TrainConfig(data=str(path), features=str(tmp_path / "f.pt2"), **TINY))
    row = trainer.measure()
    assert {"fd", "kid", "precision", "recall"} <= set(row)


def test_flat_files_are_viewed_with_data_view(tmp_path):
    np.save(tmp_path / "flat.npy", np.random.default_rng(0).uniform(-1, 1, (60, 64)).astype(np.float32))
    trainer = Trainer(TrainConfig(data=str(tmp_path / "flat.npy"), data_view=(1, 8, 8), **TINY))
    assert trainer.config.arch == "conv" and trainer.dataset.shape == (1, 8, 8)
    mlp = Trainer(TrainConfig(data=str(tmp_path / "flat.npy"), **TINY))
    assert mlp.config.arch == "mlp" and mlp.config.latent_dim == 32


def test_bad_data_says_what_is_wrong(tmp_path, capsys):
    x = np.random.default_rng(0).uniform(-1, 1, (40, 1, 8, 8)).astype(np.float32)
    x[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    np.save(tmp_path / "wide.npy", np.full((40, 1, 8, 8), 3.0, dtype=np.float32))
    np.save(tmp_path / "few.npy", np.zeros((30, 1, 8, 8), dtype=np.float32))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    folder = tmp_path / "pngs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(folder / "b.png")
    cases = [(["--data", tmp_path / "nan.npy"], "nan"), (["--data", tmp_path / "wide.npy"], "scaled to [-1, 1]"),
             (["--data", tmp_path / "few.npy"], "fewer than a batch"), (["--data", tmp_path / "broken.npz"], "broken.npz"),
             (["--data", folder], "b.png"), (["--data", tmp_path / "missing.npz"], "unknown data set"),
             (["--data", "digits", "--data-shape", "64"], "--data-shape applies to --data PATH"),
             (["--data", tmp_path / "few.npy", "--arch", "transformer"], "architecture"),
             (["--data", tmp_path / "few.npy", "--holdout", "0.7"], "--holdout"),
             (["--data", tmp_path / "few.npy", "--data-shape", "1,9,9"], "--data-shape 1,9,9 (81 values) cannot view"),
             (["--data", tmp_path / "few.npy", "--data-shape", "1,x,64"], "--data-shape '1,x,64' is not"),
             (["--data", tmp_path / "few.npy", "--data-shape", "64", "--arch", "conv"], "even side from 8 to 64"),
             (["--data", tmp_path / "few.npy", "--data-shape", "64", "--critic-norm", "spectral"],
              "(--critic-norm) applies to the conv architecture")]
    for args, needle in cases:
        code = main(["train", *map(str, args), "--steps", "1", "--out", str(tmp_path / "c.pt"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error:"), (args, err)
        assert needle.lower() in err[0].lower(), (needle, err[0])


def test_train_then_refine_a_file_model_on_the_command_line(tmp_path, capsys):
    path = images(tmp_path)
    assert main(["train", "--data", str(path), "--steps", "2", "--width", "8", "--batch-size", "16",
                 "--out", str(tmp_path / "c.pt"), "-q"]) == 0
    assert main(["refine", str(tmp_path / "c.pt"), "--chains", "8", "--steps", "3", "--warmup", "3", "-q",
                 "--no-figures", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "trained " in out and "give --features" in out
    assert np.load(tmp_path / "r" / "samples.npz")["x_after"].shape == (8, 1, 8, 8)


def test_resume_follows_moved_data_and_refuses_changed_settings(tmp_path, capsys, monkeypatch):
    """The checkpoint records the data's absolute path (resume works from another folder); a moved file is
    given again with --data (its fingerprint must match); a changed --seed or --holdout is refused."""
    (tmp_path / "a").mkdir()
    images(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a")
    common = ["--width", "8", "--batch-size", "16", "-q"]
    assert main(["train", "--data", "x.npz", "--steps", "2", "--out", str(tmp_path / "c.pt"), *common]) == 0
    assert main(["train", "--data", "x.npz", "--steps", "4", "--out", str(tmp_path / "straight.pt"), *common]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for args, needle in ((["--seed", "3"], "--seed 3 conflicts"), (["--holdout", "0.2"], "--holdout 0.2 conflicts")):
        assert main(["train", "--resume", "--steps", "4", "--out", str(tmp_path / "c.pt"), *args, *common]) == 2
        assert needle in capsys.readouterr().err, args
    (tmp_path / "a" / "x.npz").rename(tmp_path / "moved.npz")
    assert main(["train", "--resume", "--steps", "4", "--out", str(tmp_path / "c.pt"), *common]) == 2
    assert "which is no longer there: give its new place (--data PATH" in capsys.readouterr().err
    assert main(["train", "--resume", "--data", "moved.npz", "--steps", "4", "--out", str(tmp_path / "c.pt"),
                 *common]) == 0
    resumed, straight = (torch.load(tmp_path / f, weights_only=True) for f in ("c.pt", "straight.pt"))
    assert resumed["history"] == straight["history"]
    assert resumed["config"]["data"] == str(tmp_path / "moved.npz")
    assert main(["train", "--data", "digits", "--holdout", "0.2", "--out", str(tmp_path / "d.pt"), *common]) == 2
    assert "--holdout applies to --data PATH" in capsys.readouterr().err
    before = (tmp_path / "c.pt").read_bytes()  # a new run never replaces a checkpoint silently
    assert main(["train", "--steps", "1", "--out", str(tmp_path / "c.pt"), *common]) == 2
    assert "c.pt exists: --resume continues it" in capsys.readouterr().err
    assert (tmp_path / "c.pt").read_bytes() == before


def test_python_config_mistakes_and_a_feature_extractor_of_another_shape(tmp_path):
    path = images(tmp_path)
    with pytest.raises(ValueError, match=r"data_shape \(1, 16, 16\) is not the shape .* give data_view"):
        Trainer(TrainConfig(data=str(path), data_shape=(1, 16, 16), **TINY))
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(extractor, (torch.randn(4, 1, 28, 28),), dynamic_shapes=({0: batch},)),
                      tmp_path / "f28.pt2")
    with pytest.raises(ValueError, match=r"failed on held-out data of shape \(1, 8, 8\) per sample"):
        Trainer(TrainConfig(data=str(path), features=str(tmp_path / "f28.pt2"), **TINY))


def test_spectral_norm_critic_trains_resumes_and_loads(tmp_path):
    """critic_norm='spectral': every layer of the conv critic has unit spectral norm (power iteration), the run
    resumes exactly (the power-iteration vectors are in the checkpoint) and the checkpoint loads for refinement."""
    from latentmcmc.checkpoint import load_models

    path = images(tmp_path)
    cfg = TrainConfig(data=str(path), critic_norm="spectral", gp_weight=0.0, **TINY)
    straight = Trainer(cfg)
    straight.train(4, progress=False)
    for module in straight.nets["critic"].modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight.detach().reshape(module.weight.shape[0], -1)
            assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=0.05)
    first = Trainer(cfg)
    first.train(2, tmp_path / "c.pt", progress=False)
    resumed = Trainer.resume(tmp_path / "c.pt")
    resumed.train(4, progress=False)
    assert resumed.history == straight.history
    generator, critic, config = load_models(tmp_path / "c.pt")
    assert config["critic_norm"] == "spectral" and critic(generator(torch.randn(3, 64))).shape == (3,)
    with pytest.raises(ValueError, match="applies to the conv architecture"):
        Trainer(TrainConfig(data=str(path), critic_norm="spectral", arch="mlp", **TINY))
    with pytest.raises(ValueError, match="unknown critic normalisation"):
        Trainer(TrainConfig(data=str(path), critic_norm="weight", **TINY))


def test_a_folder_named_like_a_built_in_set_is_not_guessed(tmp_path, monkeypatch, capsys):
    """`--data digits` beside a folder `digits` trained the built-in set without a word; it is refused now,
    and ./digits reads the folder."""
    from latentmcmc.training.data import check_data

    monkeypatch.chdir(tmp_path)
    assert check_data("digits") == "digits"  # no such folder here: the built-in set
    (tmp_path / "digits").mkdir()
    code = main(["train", "--data", "digits", "--steps", "1", "--out", str(tmp_path / "c.pt"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "both a built-in data set and a file or folder" in err[0], err
    assert check_data("./digits") == "./digits" and check_data("digits") == "digits"  # Python: the name wins
    (tmp_path / "gaussians25").write_text("x")  # the default --data, not typed: no ambiguity to refuse
    code = main(["train", "--steps", "1", "--out", str(tmp_path / "g.pt"), "-q"])
    assert code == 0, capsys.readouterr().err
