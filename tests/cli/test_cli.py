"""The command line through its real entry point: every command, and every error case of the CLI issue.

Errors must print one ``error:`` line on stderr, exit with code 2, show no traceback and leave the
output directory as it was.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latentmcmc import checkpoint as checkpoint_module
from latentmcmc.cli import main
from latentmcmc.report import OUTPUT_FILES
from latentmcmc.samplers import MetropolisHastings

TINY = ["--width", "16", "--batch-size", "32", "--critic-steps", "1", "-q"]
FAST_REFINE = ["--chains", "64", "--steps", "12", "--warmup", "8", "-q"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


def copy_outputs(source: Path, folder: Path) -> Path:
    folder.mkdir()
    for p in source.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ring.pt"
    assert main(["train", "--data", "ring8", "--steps", "4", *TINY, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def refined(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refined") / "run"
    assert main(["refine", str(ckpt), *FAST_REFINE, "--out", str(out), "--keep-warmup"]) == 0
    return out


# ----------------------------------------------------------------------------- commands
@pytest.mark.slow
def test_help_of_every_command_lists_its_options_with_defaults(capsys):
    expected = {
        "train": ["--data", "--entropy", "--steps", "--batch-size", "--device", "--seed", "--out", "--resume"],
        "refine": ["--sampler", "--eps", "--steps", "--warmup", "--adapt", "--no-adapt", "--chains", "--beta",
                   "--prior", "--schedule", "--seed", "--device", "--out", "--generator", "--critic",
                   "--latent-shape", "--critic-sign", "--block-size", "--record-blocks", "--compile",
                   "--stream-draws", "--quiet"],
        "diagnose": ["--max-rows", "--plots"],
        "demo": ["--out", "--chains", "--steps", "--quiet"],
    }
    for command, options in expected.items():
        code, out, _ = run_cli(capsys, command, "--help")
        assert code == 0
        for option in options:
            assert option in out, (command, option)
        assert "default" in out.lower()
    # defaults written into the help text by hand (options whose default is None) are shown too
    for command, needles in (("train", ["[default: gaussians25]", "[default: the recipe's, dim]", "[default: 2 for 2-D data"]),
                             ("refine", ["[default: one block", "[default: all]", "[default: on the device]"])):
        out = " ".join(run_cli(capsys, command, "--help")[1].replace("│", " ").split())  # unwrap the table
        for needle in needles:
            assert needle in out, (command, needle)


def test_train_writes_a_checkpoint_and_resume_continues(ckpt, tmp_path, capsys):
    from latentmcmc.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["step"] == 4
    path = tmp_path / "c.pt"
    path.write_bytes(ckpt.read_bytes())
    code, out, err = run_cli(capsys, "train", "--steps", "6", "--resume", "--out", path, "-q")
    assert code == 0, err
    assert "resuming" in err and "step 6" in out
    assert load_checkpoint(path)["step"] == 6
    code, _, err = run_cli(capsys, "train", "--data", "gaussians25", "--steps", "8", "--resume", "--out", path, "-q")
    assert_one_line_error(code, err, "conflicts")
    code, _, err = run_cli(capsys, "train", "--lr", "0.5", "--steps", "8", "--resume", "--out", path, "-q")
    assert_one_line_error(code, err, "--lr 0.5 conflicts")


def test_resume_without_steps_past_the_recipe_has_nothing_to_do(ckpt, tmp_path, monkeypatch, capsys):
    import dataclasses

    from latentmcmc.checkpoint import load_checkpoint
    from latentmcmc.training import DATASETS

    path = tmp_path / "c.pt"
    path.write_bytes(ckpt.read_bytes())
    name = load_checkpoint(path)["config"]["data"]
    entry = DATASETS[name]
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(entry, recipe=dataclasses.replace(entry.recipe, steps=3)))
    code, out, err = run_cli(capsys, "train", "--resume", "--out", path, "-q")
    assert code == 0 and "nothing to do" in out and "recipe's 3" in out, (out, err)
    assert load_checkpoint(path)["step"] == 4


@pytest.mark.slow
def test_refine_writes_every_output_and_prints_the_table(refined, capsys):
    assert sorted(p.name for p in refined.iterdir()) == sorted(OUTPUT_FILES)
    metrics = json.loads((refined / "metrics.json").read_text())
    for key in ("acceptance", "eps_mean", "divergences", "ess_bulk_energy", "ess_tail_energy", "rhat_energy",
                "ess_bulk_z_min", "rhat_z_max"):
        assert key in metrics
    assert metrics["quality"]["data"] == "ring8"
    assert set(metrics["quality"]["before"]) == {"hq_fraction", "modes", "kl"}
    arrays = np.load(refined / "samples.npz")
    assert arrays["z0"].shape == arrays["z"].shape == (64, 2)
    assert arrays["x_before"].shape == arrays["x_after"].shape == (64, 2)
    for name in ("samples.png", "energy.png", "acceptance.png"):
        assert (refined / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_refine_every_sampler_runs(ckpt, tmp_path, capsys):
    for sampler in ("langevin", "annealed-langevin", "annealed-mala"):
        code, out, err = run_cli(capsys, "refine", ckpt, "--sampler", sampler, "--schedule", "sigmoid", *FAST_REFINE,
                                 "--no-figures", "--out", tmp_path / sampler)
        assert code == 0, err
        assert "acceptance" in out
        assert "nan" not in out.lower()  # an undefined metric (KL without high-quality samples) reads n/a
    metrics = json.loads((tmp_path / "annealed-mala" / "metrics.json").read_text())
    assert "log_normalizer" in metrics


@pytest.mark.slow
def test_refine_with_global_and_hamiltonian_samplers(ckpt, tmp_path, capsys):
    for sampler, extra in (("isir", ["--candidates", "4"]), ("ex2mcmc", ["--local-steps", "1"]),
                           ("hmc", ["--leapfrog-steps", "3", "--chees"]), ("flex2mcmc", ["--flow-lr", "0.01"])):
        code, out, err = run_cli(capsys, "refine", ckpt, "--sampler", sampler, *extra, *FAST_REFINE, "--no-figures",
                                 "--out", tmp_path / sampler)
        assert code == 0, err
        metrics = json.loads((tmp_path / sampler / "metrics.json").read_text())
        assert metrics["evaluations"]["forward"] > 1 and "model passes per chain" in out
        assert ("jump_rate" in metrics) == (sampler != "hmc"), sampler
    assert "n/a (no step size)" in run_cli(capsys, "refine", ckpt, "--sampler", "isir", *FAST_REFINE, "--no-figures",
                                           "--out", tmp_path / "isir2")[1]


@pytest.mark.slow
def test_compare_writes_its_table_json_and_figure(ckpt, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, text, err = run_cli(capsys, "compare", ckpt, "--methods", "prior,truncation,mala,isir,mh-gan,drs,dot",
                              "--budget", "20", "--chains", "60", "--grid-points", "101", "-q", "--out", out)
    assert code == 0, err
    data = json.loads((out / "compare.json").read_text())
    assert list(data["methods"]) == ["prior", "truncation", "mala", "isir", "mh-gan", "drs", "dot"]
    assert data["settings"]["calibrated"] and "tv_floor_95" in data["settings"]  # ring8 data, 2-D latent
    assert (out / "compare.png").stat().st_size > 0 and "TV-exact" in text
    for args, needle in ((["--methods", "mala,nuts"], "unknown method"), (["--budget", "2"], "--budget"),
                         (["--methods", "mala,isir,mala"], "names mala more than once")):
        code, _, err = run_cli(capsys, "compare", ckpt, *args, "--out", tmp_path / "bad")
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_refine_streaming_draws_to_host_writes_the_same_run(ckpt, refined, tmp_path, capsys):
    out = tmp_path / "streamed"
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--out", out, "--keep-warmup", "--stream-draws",
                           "5", "--no-figures")
    assert code == 0, err
    for name in ("z0", "z", "x_before", "x_after"):
        assert np.array_equal(np.load(out / "samples.npz")[name], np.load(refined / "samples.npz")[name]), name
    assert json.loads((out / "metrics.json").read_text())["ess_bulk_energy"] == \
        json.loads((refined / "metrics.json").read_text())["ess_bulk_energy"]


@pytest.mark.slow
def test_diagnose_prints_the_summary_and_writes_plots(refined, tmp_path, capsys):
    code, out, err = run_cli(capsys, "diagnose", refined / "run.nc", "--plots", tmp_path / "plots")
    assert code == 0, err
    header = next(line for line in out.splitlines() if "ess_bulk" in line)
    assert {"mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"} <= set(header.split())
    assert any(line.startswith("energy") for line in out.splitlines())
    for name in ("energy.png", "acceptance.png", "trace.png", "rank.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_refines_the_shipped_model(tmp_path, capsys):
    n = 2000
    code, out, err = run_cli(capsys, "demo", "--chains", str(n), "--steps", "60", "--warmup", "60", "--out",
                             tmp_path / "demo", "-q")
    assert code == 0, err
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    before, after = metrics["quality"]["before"], metrics["quality"]["after"]
    # refinement must beat 3 sd of the difference of two independent binomial proportions (the
    # before/after samples are positively correlated, which only makes this conservative)
    p = before["hq_fraction"]
    assert after["hq_fraction"] - p > 3 * math.sqrt(2 * p * (1 - p) / n)
    assert before["modes"] == 25 and after["modes"] >= 24  # the shipped generator covers every mode; beta 3 keeps them
    assert "hq_fraction" in out and "before" in out


# ----------------------------------------------------------------------------- models trained elsewhere
class TinyGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, z):
        return self.net(z)


class QuadraticLogit(nn.Module):
    """A 'discriminator' whose logit is higher near the origin: -|x|^2."""

    def forward(self, x):
        return -x.square().sum(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    g, d = TinyGenerator(), QuadraticLogit()
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(g, (torch.randn(4, 3),), dynamic_shapes=({0: batch},)), folder / "g.pt2")
    torch.export.save(torch.export.export(d, (torch.randn(4, 2),), dynamic_shapes=({0: batch},)), folder / "d.pt2")
    return folder / "g.pt2", folder / "d.pt2"


def test_refine_exported_programs_with_a_discriminator_sign(exported, tmp_path, capsys):
    g, d = exported
    # E = beta * (-1) * logit(G(z)) + 0.5|z|^2 = |G(z)|^2 + 0.5|z|^2: refinement pulls G(z) towards 0
    code, out, err = run_cli(capsys, "refine", "--generator", g, "--critic", d, "--latent-shape", "3",
                             "--critic-sign", "-1", "--beta", "20", *FAST_REFINE, "--no-figures", "--out", tmp_path / "r")
    assert code == 0, err
    arrays = np.load(tmp_path / "r" / "samples.npz")
    norm_before = np.linalg.norm(arrays["x_before"], axis=1).mean()
    norm_after = np.linalg.norm(arrays["x_after"], axis=1).mean()
    assert norm_after < 0.7 * norm_before


def test_exported_program_with_a_pickle_payload_is_refused_without_running_it(exported, tmp_path, capsys):
    import zipfile

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    g, d = exported
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(g) as src, zipfile.ZipFile(evil, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("sample_inputs/model.pt"):
                buf = io.BytesIO()
                torch.save({"x": Payload()}, buf)
                data = buf.getvalue()
            dst.writestr(name, data)
    code, _, err = run_cli(capsys, "refine", "--generator", evil, "--critic", d, "--latent-shape", "3",
                           "--out", tmp_path / "out", "-q")
    assert_one_line_error(code, err, "refused")
    assert not marker.exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- errors
@pytest.mark.slow
def test_refine_error_cases_are_one_line_and_write_nothing(ckpt, exported, tmp_path, capsys):
    out = tmp_path / "out"
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_bytes(b"these are not the weights you are looking for")
    future = tmp_path / "future.pt"
    torch.save({"format": checkpoint_module.FORMAT, "version": checkpoint_module.VERSION + 1, "config": {},
                "models": {}}, future)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    g, d = exported
    cases = [
        ([tmp_path / "missing.pt"], ["no checkpoint file"]),
        ([tmp_path], ["is a directory, not a checkpoint file"]),
        ([not_ckpt], ["not a latentmcmc checkpoint"]),
        ([future], ["version"]),
        ([ckpt, "--eps", "0"], ["eps"]),
        ([ckpt, "--eps", "-0.5"], ["eps"]),
        ([ckpt, "--sampler", "nuts"], ["unknown sampler", "mala"]),
        ([ckpt, "--latent-shape", "5"], ["latent shape", "does not fit"]),
        (["--generator", g, "--critic", d, "--latent-shape", "4"], ["latent shape", "does not fit"]),
        (["--generator", g, "--critic", d], ["--latent-shape"]),
        ([ckpt, "--chains", "0"], ["chains"]),
        ([ckpt, "--steps", "abc"], ["steps"]),  # typer's own usage error, also one line
        ([ckpt, "--no-such-option"], ["no such option"]),
        ([ckpt, "--compile", "fast"], ["--compile", "reduce-overhead"]),
        ([ckpt, "--stream-draws", "0"], ["--stream-draws", ">= 1"]),
    ]
    if not torch.cuda.is_available():
        cases.append(([ckpt, "--device", "cuda"], ["cuda", "not available"]))
    for args, needles in cases:
        code, _, err = run_cli(capsys, "refine", *FAST_REFINE, "--out", out, *args)
        assert_one_line_error(code, err, *needles)
        assert not out.exists(), args
    # an output directory that cannot be written: below a regular file (works even as root)
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--out", a_file / "sub")
    assert_one_line_error(code, err, "output directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_refine_refuses_a_read_only_output_directory(ckpt, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--out", locked / "run")
        assert_one_line_error(code, err, "not writable")
    finally:
        locked.chmod(0o700)


def test_tampered_checkpoint_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": checkpoint_module.FORMAT, "version": 1, "config": Payload()}, f)
    code, _, err = run_cli(capsys, "refine", evil, *FAST_REFINE, "--out", tmp_path / "out")
    assert_one_line_error(code, err, "refused")
    assert "pickle protocol" not in err  # torch's notice about the file's protocol once came first, asking for an issue
    assert not marker.exists()
    code, _, err = run_cli(capsys, "diagnose", evil)
    assert_one_line_error(code, err)
    assert not marker.exists()


def test_bare_command_prints_the_help_and_no_empty_error(capsys):
    code, out, err = run_cli(capsys)
    assert code == 0 and "Usage: latentmcmc" in out and "error" not in err  # help, nothing wrong


def test_version(capsys):
    from latentmcmc import __version__

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"latentmcmc {__version__}"


def test_other_commands_report_errors_in_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--data", "mnist", "--out", tmp_path / "c.pt")
    assert_one_line_error(code, err, "unknown data set")
    code, _, err = run_cli(capsys, "train", "--entropy", "max", "--out", tmp_path / "c.pt")
    assert_one_line_error(code, err, "unknown entropy")
    code, _, err = run_cli(capsys, "diagnose", tmp_path / "nothing.nc")
    assert_one_line_error(code, err, "no saved run")
    code, _, err = run_cli(capsys, "demo", "--chains", "0")
    assert_one_line_error(code, err, "chains")
    assert not (tmp_path / "c.pt").exists()


# ----------------------------------------------------------------------------- Ctrl-C
def _interrupt_after(monkeypatch, calls: int) -> None:
    """Ctrl-C at the kernel's step number ``calls + 1`` (the driver calls the kernel's step once per step)."""
    original = MetropolisHastings.step
    count = {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MetropolisHastings, "step", step)


@pytest.mark.slow
def test_ctrl_c_during_warmup_leaves_earlier_outputs_intact(ckpt, refined, tmp_path, monkeypatch, capsys):
    out = copy_outputs(refined, tmp_path / "run")
    before = snapshot(out)
    _interrupt_after(monkeypatch, 3)  # warm-up is 8 steps
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--out", out)
    assert code == 130 and "no outputs were written" in err
    assert snapshot(out) == before


def test_ctrl_c_while_sampling_writes_the_draws_so_far(ckpt, tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, 8 + 5)  # 8 warm-up steps, then 5 recorded ones
    code, out_text, _ = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--no-figures", "--out", tmp_path / "run")
    assert code == 130
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["draws"] == 5
    assert "interrupted" in out_text


def test_ctrl_c_while_writing_keeps_the_finished_draws(ckpt, refined, tmp_path, monkeypatch, capsys):
    """The sampling is done when the figures are drawn: Ctrl-C then writes the draws and metrics (not an old set
    mixed with a new one); before the fix the draws were lost and the folder kept the previous run."""
    import latentmcmc.report as report

    out = copy_outputs(refined, tmp_path / "run")
    before = snapshot(out)

    def interrupted_figure(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_save_figure", interrupted_figure)
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--seed", "7", "--out", out)
    assert code == 130 and "holds this run's samples.npz and metrics.json" in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "samples.npz"]
    assert snapshot(out)["samples.npz"] != before["samples.npz"]
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True


@pytest.mark.parametrize("command", ["compare", "fit-critic"])
def test_ctrl_c_in_a_command_that_does_not_catch_it_says_so(command, ckpt, exported, tmp_path, monkeypatch, capsys):
    """typer turns a Ctrl-C the command does not catch into exit 130 without a word: compare and fit-critic
    stopped silently."""
    import latentmcmc.compare
    import latentmcmc.fit_critic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(latentmcmc.compare, "compare", interrupted)
    monkeypatch.setattr(latentmcmc.fit_critic, "fit_critic", interrupted)
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).uniform(-0.5, 0.5, (200, 2)).astype(np.float32))
    args = (["compare", ckpt, "--beta", "3"] if command == "compare"
            else ["fit-critic", "--generator", exported[0], "--latent-shape", "3", "--real", real])
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "out")
    assert code == 130 and err.strip() == ("interrupted: the command stopped before it finished; its outputs were not "
                                           "written"), err
    assert not (tmp_path / "out").exists()


def test_ctrl_c_during_the_diagnostics_keeps_the_finished_draws(ckpt, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the seconds after sampling (ESS, R-hat) once printed 'interrupted during warm-up: no outputs
    were written' and lost the draws."""
    import latentmcmc.diagnostics as diagnostics

    real, calls = diagnostics.ess_rhat, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(diagnostics, "ess_rhat", interrupted)
    code, out_text, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--no-figures", "--out", tmp_path / "run")
    assert code == 130 and "no outputs were written" not in err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["draws"] == 12 and metrics["diagnostics"].startswith("skipped")
    assert "diagnostics skipped" in out_text and "ESS" not in out_text


@pytest.mark.slow
def test_sigint_to_the_real_process(ckpt, tmp_path):
    """A real SIGINT: exit 130, and the output is either the complete set marked interrupted or absent."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentmcmc", "refine", str(ckpt), "--chains", "64", "--warmup", "5",
         "--steps", "10000000", "--thin", "100", "--fuse", "off", "-q", "--no-figures", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a shell's background job (`pytest ... &`) starts with SIGINT ignored, which the
        # child inherits and Python keeps (it then never sees the signal and ran for ever here)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8)  # imports and warm-up take 2-3 s; then it samples
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never leave a 10-million-step run behind
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    if out.exists():
        assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "run.nc", "samples.npz"]
        assert json.loads((out / "metrics.json").read_text())["interrupted"] is True


@pytest.mark.slow
def test_console_script_and_module_entry_points(tmp_path):
    for cmd in (["latentmcmc"], [sys.executable, "-m", "latentmcmc"]):
        exe = Path(sys.executable).parent / "latentmcmc" if cmd == ["latentmcmc"] else None
        if exe is not None:
            if not exe.exists():
                continue
            cmd = [str(exe)]
        proc = subprocess.run([*cmd, "refine", str(tmp_path / "missing.pt")], capture_output=True, text=True)
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ctrl_c_during_the_demo_exits_130_like_refine(tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, 3 + 2)  # the demo's --warmup 3, then 2 recorded steps
    code, _, err = run_cli(capsys, "demo", "--chains", "20", "--warmup", "3", "--steps", "10", "-q",
                           "--out", tmp_path / "demo")
    assert code == 130, err
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["interrupted"] is True


# ----------------------------------------------------------------------------- exit codes and messages
def test_a_run_where_every_transition_diverged_exits_3_and_says_so(ckpt, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "refine", ckpt, "--eps", "1e12", "--no-adapt", *FAST_REFINE, "--no-figures",
                           "--out", tmp_path / "bad")
    assert code == 3 and "UNUSABLE: every recorded transition diverged" in out
    assert "R-hat > 1.01" not in out and "ESS bulk" not in out  # no numbers that pretend the run mixed
    metrics = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert metrics["unusable"] == "every recorded transition diverged"  # the outputs are written, flagged


def test_a_run_where_no_chain_moved_exits_3_and_diagnose_gives_no_numbers(ckpt, tmp_path, capsys):
    """metrics.json and diagnose once gave ArviZ's ESS and R-hat of constant chains (the total, 1e16)."""
    out = tmp_path / "stuck"
    code, text, _ = run_cli(capsys, "refine", ckpt, "--eps", "200", "--no-adapt", *FAST_REFINE, "--no-figures",
                            "--out", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 3 and metrics["stuck_chains"] == 64 and "UNUSABLE" in text
    assert not any(key.startswith(("ess_", "rhat_")) for key in metrics)
    code, text, _ = run_cli(capsys, "diagnose", out / "run.nc")
    assert code == 0 and "no chain moved in its 12 draws" in text and "ess_bulk" not in text


def test_every_command_documents_its_exit_codes(capsys):
    main(["--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for needle in ("Exit codes: 0 done", "2 bad input", "3 finished but unusable", "130 interrupted"):
        assert needle in text


def test_messages_for_files_passed_in_the_wrong_place(ckpt, refined, exported, tmp_path, capsys):
    code, _, err = run_cli(capsys, "refine", refined / "run.nc", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "is a saved run (NetCDF), not a checkpoint", "diagnose")
    g, _ = exported
    code, _, err = run_cli(capsys, "refine", g, "--out", tmp_path / "x")
    assert_one_line_error(code, err, "is a torch.export program", "--generator")
    code, _, err = run_cli(capsys, "diagnose", refined)
    assert_one_line_error(code, err, "is a directory, not a saved run", "run.nc")
    code, _, err = run_cli(capsys, "train", "--latent-dim", "0", "--out", tmp_path / "c.pt")
    assert_one_line_error(code, err, "--latent-dim must be >= 1")
    assert not (tmp_path / "x").exists() and not (tmp_path / "c.pt").exists()


def test_a_critic_of_the_wrong_output_shape_is_described_per_sample(tmp_path, capsys):
    class Wide(nn.Module):
        def forward(self, x):
            return x.repeat(1, 3)[:, :5]

    g, d = tmp_path / "g.pt2", tmp_path / "d.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(TinyGenerator(), (torch.randn(4, 3),), dynamic_shapes=({0: batch},)), g)
    torch.export.save(torch.export.export(Wide(), (torch.randn(4, 2),), dynamic_shapes=({0: batch},)), d)
    code, _, err = run_cli(capsys, "refine", "--generator", g, "--critic", d, "--latent-shape", "3", "--out",
                           tmp_path / "x")
    assert_one_line_error(code, err, "returns (n, 5) for a batch of n samples",
                          "one energy per sample: (n,), (n, 1) or (n, 1, 1, 1)")


def test_a_latent_shape_that_does_not_fit_names_the_one_the_generator_takes(exported, tmp_path, capsys):
    """The error once quoted torch's shape guard ("Guard failed: z.size()[1] == 3", "tuple index out of range")."""
    g, d = exported
    code, _, err = run_cli(capsys, "refine", "--generator", g, "--critic", d, "--latent-shape", "2,2", "--out",
                           tmp_path / "x")
    assert_one_line_error(code, err, "latent shape (2, 2) does not fit the generator, which takes latents of shape (3,)",
                          "--latent-shape 3")
    code, _, err = run_cli(capsys, "refine", "--generator", g, "--critic", d, "--out", tmp_path / "x")
    assert_one_line_error(code, err, "--latent-shape is needed", "this generator takes --latent-shape 3")


def test_terminal_colour_codes_never_reach_error_lines():
    from latentmcmc.cli.app import _one_line

    assert _one_line("\x1b[31mshape\x1b[0m mismatch\n  here") == "shape mismatch here"


@pytest.mark.slow
def test_ctrl_c_keeps_the_run_state_for_resume(ckpt, tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, 8 + 7)  # in sampling, right after the checkpoint at step 15
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--checkpoint-every", "5", "--no-figures", "--out", out)
    assert code == 130 and (out / ".latentmcmc-resume.pt").exists() and "--resume to continue" in err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "refine", ckpt, *FAST_REFINE, "--checkpoint-every", "5", "--no-figures", "--resume",
                           "--out", out)
    assert code == 0, err
    assert not (out / ".latentmcmc-resume.pt").exists() and "step 15" in (out / "resume.log").read_text()


def test_files_of_other_kinds_passed_as_a_checkpoint_are_named(refined, tmp_path, capsys):
    code, _, err = run_cli(capsys, "refine", refined / "samples.npz", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "is a NumPy archive")
    code, _, err = run_cli(capsys, "refine", refined / "metrics.json", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "is a JSON file")
    code, _, err = run_cli(capsys, "diagnose", refined / "samples.npz")
    assert_one_line_error(code, err, "is not a run saved by latentmcmc (a run.nc NetCDF file or a .zarr store)")


@pytest.mark.parametrize("args, needle", [
    (["refine", "--fuse", "fast"], "--fuse must be one of auto, off, on or a block length >= 2"),
    (["refine", "--fuse", "1"], "--fuse must be"),
    (["--threads", "0", "demo"], "--threads must be >= 1"),
    (["refine", "--threads", "1"], "--threads goes before the command: latentmcmc --threads ... refine"),
    (["train", "--lr", "0", "--data", "ring8"], "--lr must be > 0"),
    (["train", "--gp-weight", "-1", "--data", "ring8"], "--gp-weight must be >= 0"),
])
def test_bad_speed_and_recipe_options(args, needle, ckpt, tmp_path, capsys):
    if args[0] == "refine":
        args = ["refine", ckpt, *args[1:], *FAST_REFINE]
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / ("c.pt" if "train" in args else "x"))
    assert_one_line_error(code, err, needle)
    assert not any(tmp_path.iterdir())


def test_train_uses_the_recipe_and_ends_with_the_quality_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--data", "ring8", "--steps", "3", "--width", "16", "--batch-size", "32",
                             "--critic-steps", "1", "-q", "--out", tmp_path / "c.pt")
    assert code == 0, err
    assert "trained ring8 (dim, width 16, lr 0.0002, batch size 32, critic steps 1) to step 3" in out and "modes" in out and "prior samples" in out
    from latentmcmc.checkpoint import load_checkpoint

    saved = load_checkpoint(tmp_path / "c.pt")
    assert [row["step"] for row in saved["quality_history"]] == [0, 3]


@pytest.mark.slow  # 1.5-1.8 s: the quick subset stays under a minute
def test_refine_and_compare_with_a_uniform_prior(exported, tmp_path, capsys):
    """--prior uniform:-1,1: the latents written lie in the box, metrics name the prior; --no-prior is renamed."""
    g, d = exported
    common = ["--generator", g, "--critic", d, "--latent-shape", "3", "--critic-output", "logit"]
    code, out, err = run_cli(capsys, "refine", *common, "--prior", "uniform:-1,1", *FAST_REFINE, "--no-figures",
                             "--out", tmp_path / "r")
    assert code == 0, err
    arrays = np.load(tmp_path / "r" / "samples.npz")
    assert np.abs(arrays["z"]).max() < 1 and np.abs(arrays["z0"]).max() < 1
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["prior"] == "uniform:-1,1"
    code, out, err = run_cli(capsys, "compare", *common, "--prior", "uniform:-1,1", "--methods", "prior,mala,mh-gan",
                             "--chains", "40", "--budget", "8", "--no-figures", "-q", "--out", tmp_path / "c")
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["settings"]["prior"] == "uniform:-1,1"
    code, out, err = run_cli(capsys, "compare", *common, "--methods", "prior,mh-gan", "--chains", "40", "--budget", "8",
                             "--no-figures", "-q", "--out", tmp_path / "b0")  # no sampler and no sampler option given
    assert code == 0 and "applies to none" not in err, err
    code, out, err = run_cli(capsys, "compare", *common, "--prior", "uniform:0,1", "--methods", "prior,truncation",
                             "--chains", "40", "--budget", "8", "--no-figures", "-q", "--out", tmp_path / "t")
    assert_one_line_error(code, err, "truncation", "uniform:0,1")
    code, out, err = run_cli(capsys, "compare", *common, "--prior", "uniform:0,1", "--chains", "40", "--budget", "8",
                             "--no-figures", "-q", "--out", tmp_path / "d")  # the default methods: truncation left out
    assert code == 0 and "leaves it out of its default methods" in err, err
    assert "truncation" not in json.loads((tmp_path / "d" / "compare.json").read_text())["methods"]
    code, out, err = run_cli(capsys, "refine", *common, "--prior", "uniform:1,0", *FAST_REFINE, "--out", tmp_path / "b")
    assert_one_line_error(code, err, "--prior", "LO < HI")
    code, out, err = run_cli(capsys, "refine", *common, "--no-prior", *FAST_REFINE, "--no-figures",
                             "--out", tmp_path / "n")
    assert code == 0 and "--no-prior is now --prior none" in err, err
    code, out, err = run_cli(capsys, "refine", *common, "--no-prior", "--prior", "uniform:-1,1", *FAST_REFINE,
                             "--out", tmp_path / "n2")
    assert_one_line_error(code, err, "--no-prior", "give one")
