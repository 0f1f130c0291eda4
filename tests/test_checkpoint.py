"""Checkpoints: round trip, and refusal of missing, foreign, corrupt, malicious or future files."""

import os
import pickle

import pytest
import torch

from latentmcmc import MALA, LatentEnergy
from latentmcmc.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_models,
    save_checkpoint,
)
from latentmcmc.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    trainer = Trainer(TrainConfig(data="ring8", width=32, depth=2, batch_size=32, critic_steps=1))
    trainer.train(2, path, progress=False)
    return path, trainer


def test_load_models_rebuilds_the_networks(ckpt):
    path, trainer = ckpt
    generator, critic, config = load_models(path)
    z = torch.randn(5, config["latent_dim"])
    torch.testing.assert_close(generator(z), trainer.generator.eval()(z))
    assert not generator.training
    chains = MALA(LatentEnergy(generator, critic), eps=0.01).run(z, steps=3, seed=0)
    assert chains.draws.shape == (5, 3, 2)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(other)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a latentmcmc checkpoint"):
        load_checkpoint(text)


def test_truncated_file(ckpt, tmp_path):
    path, _ = ckpt
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt|not a latentmcmc"):
        load_checkpoint(cut)


class Exploit:
    """Unpickling this would run ``os.system``; a safe loader must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


def test_tampered_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "config": {}, "models": {}, "payload": Exploit()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(bad)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_unknown_version(tmp_path):
    path = save_checkpoint(tmp_path / "future.pt", {"config": {}, "models": {}})
    data = torch.load(path, weights_only=True)
    data["version"] = 99
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)


def test_config_that_does_not_fit_the_weights(ckpt, tmp_path):
    path, _ = ckpt
    data = torch.load(path, weights_only=True)
    data["config"]["width"] = 64
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_models(tmp_path / "mismatch.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ok.pt", {"config": {}, "models": {}})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    from latentmcmc.atomic import WriteError

    with pytest.raises(WriteError, match="could not write .*ok.pt.* the previous ok.pt .* is intact"):
        save_checkpoint(path, {"config": {"x": 1}, "models": {}})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ok.pt"]  # no temporary file left


def test_saved_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "perm.pt", {"config": {}, "models": {}})
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644
