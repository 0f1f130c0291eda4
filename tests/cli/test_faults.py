"""Faults and bad days: a full disk, two runs into one folder, SIGTERM, NaN energies mid-run, a read-only output,
a truncated run state, a run killed mid-write; each one clear line, and nothing lost."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latentmcmc.cli import main
from latentmcmc.output_lock import LOCK_NAME, OutputLock
from latentmcmc.refinement import KILL_AFTER_CHECKPOINT, refine

CKPT = str(Path(__file__).resolve().parents[2] / "latentmcmc" / "assets" / "demo_gaussians25.pt")
SMALL = ["--chains", "40", "--steps", "6", "--warmup", "4", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A folder holding the outputs of an earlier run."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert main(["refine", CKPT, *SMALL, "--no-figures", "--out", str(out)]) == 0
    return out


def copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for p in folder.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    return to


# ---------------------------------------------------------------------- a full disk
def _file_size_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.slow
def test_a_full_disk_while_writing_keeps_the_previous_outputs(earlier, tmp_path):
    out = copy(earlier, tmp_path / "run")
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "-m", "latentmcmc", "refine", CKPT, "--chains", "300", "--steps", "20",
                           "--warmup", "4", "-q", "--seed", "3", "--out", str(out)], env=ENV, capture_output=True,
                          text=True, preexec_fn=_file_size_limit, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"could not write the outputs into {out}" in line and "file-size limit" in line
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)  # no leftovers


def test_a_full_disk_while_checkpointing_keeps_the_last_state(tmp_path, monkeypatch, capsys):
    real, calls = torch.save, {"n": 0}

    def save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--checkpoint-every", "2", "--no-figures", "--out", out)
    assert code == 2 and "has no space left on its device" in one_error_line(err)
    state = out / ".latentmcmc-resume.pt"
    assert state.exists() and not list(out.glob("*.tmp"))  # the first state is intact, no half-written one
    monkeypatch.setattr(torch, "save", real)
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--checkpoint-every", "2", "--no-figures", "--resume",
                           "--out", out)
    assert code == 0, err


# ---------------------------------------------------------------------- two runs, one folder
def test_a_second_run_into_the_same_folder_is_refused_while_the_first_lives(tmp_path, capsys):
    out = tmp_path / "run"
    lock = OutputLock(out).acquire()  # a live run holds the folder
    try:
        code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--out", out)
        assert code == 2 and f"another latentmcmc run (process {os.getpid()}) is writing into {out}" in one_error_line(err)
    finally:
        lock.release()
    assert not out.exists()  # nothing of the refused run, and the holder's folder went with its lock
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--no-figures", "--out", out)
    assert code == 0, err
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_crashed_run_does_not_keep_the_folder_locked(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.run([sys.executable, "-c", "import os, sys; from latentmcmc.output_lock import OutputLock; "
                             f"OutputLock({str(out)!r}).acquire(); os.kill(os.getpid(), 9)"], env=ENV, timeout=120)
    assert holder.returncode == -signal.SIGKILL and (out / LOCK_NAME).exists()
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--no-figures", "--out", out)
    assert code == 0, err


# ---------------------------------------------------------------------- SIGTERM
@pytest.mark.slow
def test_sigterm_is_handled_as_ctrl_c(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "latentmcmc", "refine", CKPT, "--chains", "100", "--steps", "100000",
                             "--warmup", "2", "-q", "--no-figures", "--checkpoint-every", "20", "--out", str(out)],
                            env=ENV, stderr=subprocess.PIPE, text=True)
    state = out / ".latentmcmc-resume.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:  # sampling has begun once a state was written
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True
    assert state.exists() and "--resume to continue" in err and "Traceback" not in err


# ---------------------------------------------------------------------- NaN energies mid-run
class TurnsNaN(nn.Module):
    """A critic that returns NaN for samples with x[0] > 0.5 after its first ``calm`` calls."""

    def __init__(self, calm: int) -> None:
        super().__init__()
        self.calm, self.calls = calm, 0

    def forward(self, x):
        self.calls += 1
        energy = x.square().sum(1)
        if self.calls > self.calm:
            energy = torch.where(x[:, 0] > 0.5, torch.full_like(energy, float("nan")), energy)
        return energy


@pytest.mark.parametrize("sampler", ["mala", "langevin", "isir"])
def test_nan_energies_of_some_chains_mid_run_are_rejected_and_counted(sampler):
    with pytest.warns(RuntimeWarning, match="divergent|froze"):
        result = refine(nn.Identity(), TurnsNaN(calm=12), (2,), num_chains=200, sampler=sampler, steps=20, warmup=5,
                        progress=False, seed=1)
    assert result.metrics["divergences"] > 0 and bool(torch.isfinite(result.z).all())
    assert bool(torch.isfinite(result.chains.energy).all())  # a NaN never became a state
    assert "unusable" not in result.metrics  # the other chains' draws stand


# ---------------------------------------------------------------------- a read-only output
def test_a_read_only_output_is_named_before_sampling(tmp_path, monkeypatch, capsys):
    import latentmcmc.report as report

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(report.tempfile, "mkstemp", read_only)
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--out", tmp_path / "run")
    assert code == 2 and "is on a read-only file system" in one_error_line(err)


def test_an_output_that_turns_read_only_while_writing_keeps_its_files(earlier, tmp_path, monkeypatch, capsys):
    out = copy(earlier, tmp_path / "run")
    before = snapshot(out)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(np, "savez_compressed", read_only)
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--seed", "5", "--out", out)
    line = one_error_line(err)
    assert code == 2 and "is on a read-only file system; its previous files are as they were" in line
    assert snapshot(out) == before


# ---------------------------------------------------------------------- a damaged or half-written state
@pytest.mark.slow
def test_a_truncated_run_state_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "latentmcmc", "refine", CKPT, *SMALL, "--no-figures", "--checkpoint-every", "2",
            "--out", str(out)]
    killed = subprocess.run(args, env={**ENV, KILL_AFTER_CHECKPOINT: "2"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    state = out / ".latentmcmc-resume.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    resumed = subprocess.run([*args, "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2 and "corrupt" in one_error_line(resumed.stderr)


_KILL_IN_THE_SECOND_WRITE = """
import os, signal, sys
import latentmcmc.atomic as atomic
real, calls = os.replace, [0]
def replace(src, dst):
    calls[0] += 1
    if str(dst).endswith(".latentmcmc-resume.pt") and calls[0] >= 2:
        os.kill(os.getpid(), signal.SIGKILL)  # the new state is written beside the old one, not yet renamed
    return real(src, dst)
atomic.os.replace = replace
from latentmcmc.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_mid_write_leaves_nothing_behind_once_resumed(tmp_path):
    out = tmp_path / "run"
    args = ["refine", CKPT, *SMALL, "--no-figures", "--checkpoint-every", "2", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _KILL_IN_THE_SECOND_WRITE, *args], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(out.glob("*.latentmcmc-resume.pt.*.tmp"))  # the half-written state a killed write leaves
    (out / ".staging-leftover").mkdir()  # and what a run killed while staging its outputs leaves
    resumed = subprocess.run([sys.executable, "-m", "latentmcmc", *args, "--resume"], env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "resume.log", "run.nc", "samples.npz"]
