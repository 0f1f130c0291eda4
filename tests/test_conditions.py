"""Class-conditional models: per-chain conditions through every sampler, blocks, outputs and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.models import WithClass, conditional_pair

from latentmcmc import LatentEnergy
from latentmcmc.conditions import check_conditional, cycle_classes, parse_classes
from latentmcmc.refinement import refine
from latentmcmc.samplers import SAMPLERS, SamplerOptions


class Measure:
    """A quality measure with a classifier (what per-class accuracy needs), on 2-D toy samples."""

    name = "toy"
    classifier = torch.nn.Linear(2, 3)

    def __call__(self, x):
        return {"mean": float(x.mean())}


OPTIONS = SamplerOptions(eps=0.05, candidates=4, local_steps=2, leapfrog_steps=3)
CLASSES = [0, 2, 1]


def _run(g, d, condition=None, **kw):
    return refine(g, d, (2,), num_chains=12, steps=6, warmup=3, adapt=False, seed=5, progress=False,
                  sampler_options=OPTIONS, condition=condition, **kw)


@pytest.mark.filterwarnings("ignore:.*not apply to sampler")
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_conditional_run_is_the_per_class_runs_bit_for_bit(name):
    """Chain i of one run over classes 0, 2, 1 (cycled) equals chain i of the run of the model with its class fixed."""
    if "flow" in SAMPLERS[name].options:
        pytest.skip(f"{name} fits one flow to all chains in warm-up: its chains are coupled by design")
    g, d = conditional_pair()
    c = cycle_classes(CLASSES, 12)
    mixed = _run(g, d, c, sampler=name)
    assert torch.equal(mixed.condition, c)
    for k in set(CLASSES):
        alone = _run(WithClass(g, k), WithClass(d, k), sampler=name)
        rows = c == k
        assert torch.equal(mixed.z[rows], alone.z[rows]), (name, k)
        assert torch.equal(mixed.chains.draws[rows], alone.chains.draws[rows]), (name, k)
        assert torch.equal(mixed.after[rows], alone.after[rows])


def test_blocks_take_their_chains_conditions():
    g, d = conditional_pair()
    c = cycle_classes(CLASSES, 12)
    mixed = _run(g, d, c, block_size=5)
    for k in set(CLASSES):
        alone = _run(WithClass(g, k), WithClass(d, k), block_size=5)
        assert torch.equal(mixed.z[c == k], alone.z[c == k])


def test_condition_errors_name_the_problem():
    g, d = conditional_pair()
    with pytest.raises(ValueError, match="4 rows for 12 chains"):
        _run(g, d, cycle_classes(CLASSES, 4))
    energy = LatentEnergy(g, d, condition=cycle_classes(CLASSES, 6))
    with pytest.raises(ValueError, match="a batch of 4 latents for 6 chains"):
        energy(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="out of the generator's range .*takes classes 0 to 2, the conditions run from 0 to 7"):
        check_conditional(g, d, (2,), torch.tensor([0, 7]))  # three classes: the message says which are valid
    plain = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="generator fails on a condition"):
        check_conditional(plain, d, (2,), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="run from 0 to 5"):  # a bad id after the first chains is found too
        _run(g, d, cycle_classes([0, 1, 2, 5], 12))
    for text, needle in (("a,b", "'a' is not a class id"), ("0,,3", "an empty part"), ("9-0", "runs backwards"),
                         ("-1", "'-1' is not a class id"), ("0-", "'0-' is not")):
        with pytest.raises(ValueError, match=needle):
            parse_classes(text)
    assert parse_classes("0-2,7") == [0, 1, 2, 7]
    assert parse_classes(" 3 - 5 ") == [3, 4, 5]
    assert cycle_classes([3, 5], 5).tolist() == [3, 5, 3, 5, 3]
    from latentmcmc.conditions import cover_classes

    with pytest.raises(ValueError, match="10 classes but there are 5 chains: classes 5, 6, 7, 8, 9 would get none"):
        cover_classes(list(range(10)), 5)
    assert cover_classes([3, 5], 5).tolist() == [3, 5, 3, 5, 3]


@pytest.fixture(scope="module")
def exported_conditional(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conditional")
    g, d = conditional_pair()
    batch = torch.export.Dim("batch")
    y = torch.zeros(4, dtype=torch.long)
    torch.export.save(torch.export.export(g, (torch.randn(4, 2), y), dynamic_shapes=({0: batch}, {0: batch})),
                      folder / "g.pt2")
    torch.export.save(torch.export.export(d, (torch.randn(4, 2), y), dynamic_shapes=({0: batch}, {0: batch})),
                      folder / "d.pt2")
    return folder / "g.pt2", folder / "d.pt2"


@pytest.mark.slow  # 1.5-1.8 s: the quick subset stays under a minute
def test_refine_command_with_classes_and_a_condition_file(exported_conditional, tmp_path, capsys):
    from latentmcmc.cli import main

    g, d = exported_conditional
    common = ["refine", "--generator", str(g), "--critic", str(d), "--latent-shape", "2", "--chains", "30",
              "--steps", "6", "--warmup", "4", "-q", "--no-figures"]
    assert main(common + ["--classes", "0-2", "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    arrays = np.load(tmp_path / "a" / "samples.npz")
    assert arrays["condition"].tolist() == [0, 1, 2] * 10
    np.save(tmp_path / "c.npy", np.array([2] * 30))
    assert main(common + ["--condition", str(tmp_path / "c.npy"), "--out", str(tmp_path / "b")]) == 0
    assert np.load(tmp_path / "b" / "samples.npz")["condition"].tolist() == [2] * 30
    np.save(tmp_path / "c7.npy", np.array([1] * 7))  # without --chains: a chain for each row
    no_chains = [a for i, a in enumerate(common) if a != "--chains" and common[i - 1] != "--chains"]
    assert main(no_chains + ["--condition", str(tmp_path / "c7.npy"), "--out", str(tmp_path / "b7")]) == 0
    assert np.load(tmp_path / "b7" / "samples.npz")["condition"].tolist() == [1] * 7
    capsys.readouterr()
    np.save(tmp_path / "short.npy", np.array([1, 2]))
    for extra, needle in ((["--condition", str(tmp_path / "short.npy")], "2 rows for 30 chains"),
                          (["--classes", "x"], "'x' is not a class id"),
                          (["--classes", "1", "--condition", str(tmp_path / "c.npy")], "give one"),
                          (["--classes", "0,9"], "out of the generator's range"),
                          ([], "give --classes or --condition")):
        assert main(common + extra + ["--out", str(tmp_path / "e")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    np.save(tmp_path / "real.npy", np.zeros((40, 2), dtype=np.float32))
    assert main(["fit-critic", "--generator", str(g), "--latent-shape", "2", "--real", str(tmp_path / "real.npy"),
                 "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes 2 inputs (a conditional G(z, c))" in err[0], err


def test_per_class_accuracy_is_measured_with_a_classifier():
    """With class ids and a quality measure that has a classifier, each class's accuracy before and after is kept."""
    g, d = conditional_pair()

    c = cycle_classes([0, 1, 2], 12)
    result = _run(g, d, c, quality=Measure())
    per_class = result.metrics["per_class"]
    assert list(per_class) == ["0", "1", "2"] and all(row["chains"] == 4 for row in per_class.values())
    with torch.no_grad():
        predicted = Measure.classifier(result.after).argmax(1)
    assert per_class["1"]["accuracy_after"] == float((predicted[c == 1] == 1).double().mean())
    from latentmcmc.report import format_table

    assert "class accuracy" in format_table(result.metrics)


def test_compare_runs_every_method_with_conditions():
    from latentmcmc.compare import compare, comparison_table

    g, d = conditional_pair()

    c = cycle_classes([0, 1, 2], 30)
    result = compare(g, d, (2,), ("prior", "mala", "isir", "mh-gan", "drs", "dot"), budget=8, num_chains=30,
                     progress=False, condition=c, quality=Measure())
    assert result.settings["conditions"] == 3 and not result.settings["calibrated"]
    assert all(0 <= row["quality"]["class_acc"] <= 1 for row in result.rows.values())
    assert "real data has no conditions" in comparison_table(result)
    again = compare(g, d, (2,), ("mh-gan",), budget=8, num_chains=30, progress=False, condition=c)
    assert torch.equal(again.samples["mh-gan"], result.samples["mh-gan"])


@pytest.mark.parametrize("kind", ["inference_data", "datatree"])
def test_run_files_keep_each_chains_condition(tmp_path, kind):
    from latentmcmc import Chains

    g, d = conditional_pair()
    c = cycle_classes([0, 1, 2], 12)
    result = _run(g, d, c)
    result.chains.save(tmp_path / "run.nc", kind)
    back = Chains.load(tmp_path / "run.nc")
    assert torch.equal(back.extra["condition"], c)


def test_the_samples_figure_puts_one_class_per_row():
    from latentmcmc.plots import samples_figure

    x = torch.rand(30, 1, 8, 8)
    fig = samples_figure(x, x, classes=cycle_classes([0, 1, 2], 30), prior="uniform:-1,1")
    axes = fig.axes
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["0", "1", "2"]
    assert "uniform:-1,1" in axes[0].get_title()


@pytest.mark.slow
def test_the_conditional_dcgan_example_exports_what_refine_classes_takes(tmp_path, capsys):
    """examples/cdcgan_digits.py (a few steps) and the README's refine command on its files."""
    import subprocess
    import sys
    from pathlib import Path

    from latentmcmc.cli import main

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "examples" / "cdcgan_digits.py"), "--steps", "3", "--out",
                    str(tmp_path / "m")], check=True, capture_output=True)
    m = tmp_path / "m"
    code = main(["refine", "--generator", str(m / "g.pt2"), "--critic", str(m / "d.pt2"), "--latent-shape", "32",
                 "--critic-output", "logit", "--data-shape", "1,8,8", "--classes", "0-9", "--chains", "40",
                 "--steps", "4", "--warmup", "4", "--features", str(m / "features.pt2"), "--classifier",
                 str(m / "classifier.pt2"), "--reference", str(m / "reference.npz"), "-q", "--out", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "class accuracy" in out.out and "class 9" in out.out
    assert np.load(tmp_path / "r" / "samples.npz")["condition"].tolist() == list(range(10)) * 4


def test_checking_a_conditional_model_builds_no_autograd_graph():
    """A helper inserted between ``@torch.no_grad()`` and ``check_conditional`` once took the decorator."""
    g, d = conditional_pair()
    seen = []
    d.register_forward_hook(lambda module, args, out: seen.append(torch.is_grad_enabled()))
    check_conditional(g, d, (2,), torch.tensor([0, 1, 2]))
    assert seen == [False]
