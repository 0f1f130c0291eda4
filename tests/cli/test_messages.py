"""What a new user met (issue: faults and bad days), each case as it was reported: one readable line, no library
internals, nothing silently ignored, figures that say what they show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from latentmcmc.cli import main

CKPT = str(Path(__file__).resolve().parents[2] / "latentmcmc" / "assets" / "demo_gaussians25.pt")
SMALL = ["--chains", "40", "--steps", "6", "--warmup", "4", "-q"]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def test_one_chain_runs(tmp_path, capsys):
    """``--chains 1`` failed for every sampler ('self.stride(-1) must be 1 to view Float as Byte')."""
    code, _, err = run_cli(capsys, "refine", CKPT, "--chains", "1", "--steps", "5", "--warmup", "3", "-q", "--no-figures",
                           "--out", tmp_path / "one")
    assert code == 0, err


@pytest.mark.parametrize("args, needle", [
    (["--critic-output", "probability", "--critic-sign", "-1"],
     "--critic-sign -1 (0.1's spelling of --critic-output logit) contradicts --critic-output probability"),
    (["--steps", "100", "--max-steps", "60"], "--steps 100 and --max-steps 60 disagree"),
])
def test_conflicting_flags_are_refused(args, needle, tmp_path, capsys):
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, *args, "--out", tmp_path / "x")
    assert needle in error_line(code, err) and not (tmp_path / "x").exists()


def test_resuming_a_training_run_that_is_not_there_says_so(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--data", "ring8", "--steps", "2", "--width", "8", "--batch-size", "16",
                           "--critic-steps", "1", "-q", "--resume", "--out", tmp_path / "c.pt")
    assert code == 0 and "does not exist yet: starting a new run there" in err


def test_the_shipped_demo_model_cannot_be_resumed_and_says_why(tmp_path, capsys):
    copy = tmp_path / "demo.pt"
    copy.write_bytes(Path(CKPT).read_bytes())
    code, _, err = run_cli(capsys, "train", "--resume", "--steps", "5", "-q", "--out", copy)
    line = error_line(code, err)
    assert "holds a trained model without its training state" in line and "'mi'" not in line


def test_too_many_chains_is_a_memory_message_not_the_allocators(tmp_path, capsys):
    code, _, err = run_cli(capsys, "refine", CKPT, "--chains", "1000000000000", "--out", tmp_path / "x")
    line = error_line(code, err)
    assert "not enough memory" in line and "--block-size" in line and "bytes" not in line


def test_a_reference_file_that_is_not_numpy_is_named_without_numpys_advice(tmp_path, capsys):
    features = tmp_path / "f.pt2"
    torch.export.save(torch.export.export(nn.Linear(2, 3), (torch.randn(4, 2),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), features)
    junk = tmp_path / "reference.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--features", features, "--reference", junk, "--out",
                           tmp_path / "x")
    line = error_line(code, err)
    assert "reference.npz" in line and "allow_pickle" not in line


def test_an_output_under_proc_is_explained(capsys):
    if not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    code, _, err = run_cli(capsys, "refine", CKPT, "--out", "/proc/latentmcmc-out")
    assert "does not accept new files" in error_line(code, err)


def test_a_fixed_batch_critic_names_its_batch_size(tmp_path, capsys):
    g, d = tmp_path / "g.pt2", tmp_path / "d.pt2"
    torch.export.save(torch.export.export(nn.Linear(2, 2), (torch.randn(4, 2),),
                                          dynamic_shapes=({0: torch.export.Dim("batch")},)), g)
    torch.export.save(torch.export.export(nn.Linear(2, 1), (torch.randn(7, 2),)), d)  # batch fixed at 7
    code, _, err = run_cli(capsys, "refine", "--generator", g, "--critic", d, "--latent-shape", "2", *SMALL,
                           "--out", tmp_path / "x")
    line = error_line(code, err)
    assert "fixed batch size of 7" in line and "--chains 7" in line and "dynamic batch" in line


@pytest.mark.slow
def test_resume_says_where_it_resumes(tmp_path, capsys, monkeypatch):
    from latentmcmc.samplers import MetropolisHastings

    original, count = MetropolisHastings.step, {"n": 0}

    def step(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] > 7:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MetropolisHastings, "step", step)
    out = tmp_path / "run"
    assert run_cli(capsys, "refine", CKPT, *SMALL, "--checkpoint-every", "2", "--no-figures", "--out", out)[0] == 130
    monkeypatch.undo()
    state = out / ".latentmcmc-resume.pt"
    saved = state.read_bytes()
    for forgot in (["--checkpoint-every", "2"], []):  # the same command without --resume once started afresh over it
        code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, *forgot, "--no-figures", "--out", out)
        assert "holds an interrupted run's state" in error_line(code, err) and "--resume" in err
        assert state.read_bytes() == saved
    code, _, err = run_cli(capsys, "refine", CKPT, *SMALL, "--checkpoint-every", "2", "--no-figures", "--resume",
                           "--out", out)
    assert code == 0 and "resuming the run saved in" in err and "step 6" in err


def test_a_run_state_passed_as_a_checkpoint_is_named(tmp_path, capsys):
    from latentmcmc.samplers.resume import save_state

    state = save_state(tmp_path / "state.pt", {"fingerprint": {}, "blocks": {}})
    code, _, err = run_cli(capsys, "refine", state, "--out", tmp_path / "x")
    assert "is a saved run state (refine --checkpoint-every), not a model checkpoint" in error_line(code, err)


def test_stop_rule_options_show_their_defaults(capsys):
    main(["refine", "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for flag, default in (("--until-rhat", "no stop rule"), ("--min-ess", "no stop rule"), ("--max-steps", "--steps")):
        assert flag in text and f"[default: {default}]" in text, flag


# ---------------------------------------------------------------------- figures say what they show
def _captured_figures(monkeypatch) -> list[Figure]:
    figures: list[Figure] = []
    real = Figure.savefig

    def savefig(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


@pytest.mark.slow
def test_trace_and_rank_plots_label_their_axes_and_say_which_chains(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["refine", CKPT, "--chains", "30", "--steps", "10", "--warmup", "2", "-q", "--no-figures", "--out",
                 str(out)]) == 0
    figures = _captured_figures(monkeypatch)
    assert main(["diagnose", str(out / "run.nc"), "--plots", str(tmp_path / "plots")]) == 0
    titles = {fig._suptitle.get_text(): fig for fig in figures if fig._suptitle is not None}
    trace = next(fig for title, fig in titles.items() if "density per chain" in title)
    rank = next(fig for title, fig in titles.items() if "ranks among these chains" in title)
    assert "the first 8 of 30 chains" in trace._suptitle.get_text() and "first 8 of 30" in rank._suptitle.get_text()
    labels = {(ax.get_xlabel(), ax.get_ylabel()) for ax in trace.axes}
    assert ("draw", "z") in labels and ("z", "density") in labels


def test_samples_show_the_data_through_them():
    from latentmcmc.plots import samples_figure

    x = torch.randn(200, 2)
    fig = samples_figure(x, x, reference=torch.randn(300, 2))
    alphas = [c.get_alpha() for c in fig.axes[0].collections]
    assert alphas[0] is None or alphas[0] == 1  # the data, opaque, below
    assert alphas[1] is not None and alphas[1] < 0.5  # the samples, translucent, above


def test_compare_figure_marks_missing_numbers():
    from latentmcmc.compare import Comparison, comparison_figure

    rows = {name: {"method": name, "quality": {"hq_fraction": 0.3}, "ess_per_kpass": ess, "tv_to_exact": 0.1}
            for name, ess in (("prior", None), ("mala", 12.0))}
    settings = {"budget": 8, "beta": 1.0, "chains": 10, "exact_distance": "mode weights", "tv_floor_mean": 0.05,
                "tv_floor_95": 0.08}
    fig = comparison_figure(Comparison(rows, settings, {k: torch.randn(10, 2) for k in rows}, torch.randn(20, 2)))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("n/a") == 1
    scatter = [ax for ax in fig.axes if ax.get_xlabel() == "x[0]"]
    assert len(scatter) == 2 and all(ax.get_ylabel() == "x[1]" for ax in scatter)
    assert "each method's samples G(z)" in fig._suptitle.get_text()


@pytest.mark.parametrize("shape, pictures", [((10, 1, 8, 8), 2), ((10, 64), 2), ((10, 5), 0)])
def test_compare_figure_shows_each_methods_images_and_no_empty_columns(shape, pictures):
    """Image samples once got no picture, and the one bar panel sat in the first of four columns."""
    from latentmcmc.compare import Comparison, comparison_figure

    rows = {name: {"method": name, "ess_per_kpass": 10.0} for name in ("prior", "mala")}
    settings = {"budget": 8, "beta": 1.0, "chains": 10}
    fig = comparison_figure(Comparison(rows, settings, {k: torch.rand(shape) for k in rows}, None))
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == pictures and [ax.get_title() for ax in shown] == ["prior", "mala"][:pictures]
    assert len(fig.axes) == 1 + pictures  # the bar panel and the pictures
    assert fig.axes[0].get_gridspec().ncols == (4 if pictures else 1)
