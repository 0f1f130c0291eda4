"""The package's shape: no import cycles, one table per named choice behind the CLI, a kernel is one
module plus one table line, and every latentmcmc 0.1 name still works (deprecated ones warn)."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers.conformance import (
    check_accounting,
    check_bad_options,
    check_block_alone_equals_block_in_a_loop,
    check_determinism,
    check_gaussian,
    check_mixture,
    check_resume,
)
from helpers.imports import cycles, import_graph
from helpers.mc import (
    assert_gaussian_moments,
    exact_draws,
    gaussian_energy,
    random_gaussian,
)
from torch import nn

from latentmcmc import MALA, AnnealedMALA
from latentmcmc.cli import main
from latentmcmc.samplers import SAMPLERS, Sampler, SamplerEntry, SamplerOptions
from latentmcmc.samplers.kernel import SamplerState, gradient_state
from latentmcmc.samplers.metropolis import MetropolisHastings, Proposal
from latentmcmc.samplers.options import COMPILE, EPS, Option, positive_number

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_has_no_import_cycles():
    """Lazy (function-level) imports count: a cycle hidden in a function is still a cycle."""
    graph = import_graph(ROOT, "latentmcmc")
    assert "latentmcmc.samplers.driver" in graph and graph["latentmcmc.samplers.mala"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    """The check above can fail: two modules importing each other, one of them inside a function."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


# ---------------------------------------------------------------------- a kernel is one module and one line
# What follows is a whole new sampler as a user would write it in a module of their own: an option
# declared next to the kernel, a proposer, the sampler class.  The test then adds the one table line.
SCALE = Option("scale", 1.0, "Random-walk Metropolis: the proposal's standard deviation is scale * sqrt(eps).", float,
               positive_number)


class RandomWalkProposer:
    """Gaussian random walk ``z' = z + scale sqrt(eps) xi``: symmetric, so the MH log ratio is ``E(z) - E(z')``."""

    fusable = True

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def init(self, target, z, params):
        return gradient_state(target, z)

    def draw_noise(self, state: SamplerState, rng, params):
        return torch.randn(state.z.shape, generator=rng, dtype=state.z.dtype, device=state.z.device)

    def propose(self, target, state, params, xi):
        step = (self.scale * params.eps.sqrt()).reshape(-1, *([1] * (state.z.dim() - 1)))
        z_new = state.z + step * xi
        energy, grad = target.value_and_grad(z_new)
        e_old, _ = target.potential(state.z, state.energy, state.grad)
        e_new, _ = target.potential(z_new, energy, grad)
        return Proposal(z_new, energy, grad, e_old - e_new)


class RandomWalkMetropolis(Sampler):
    """Random-walk Metropolis: ``MetropolisHastings(RandomWalkProposer(scale))``."""

    options = (EPS, SCALE, COMPILE)
    default_target_accept = 0.234

    def make_kernel(self):
        return MetropolisHastings(RandomWalkProposer(self.scale))


@pytest.fixture
def rwm(monkeypatch):
    """The one table line: the new sampler is then a refinement method, with its option on the command line."""
    monkeypatch.setitem(SAMPLERS, "rwm", SamplerEntry(RandomWalkMetropolis, "random-walk Metropolis"))
    return "rwm"


@pytest.mark.slow
def test_a_new_kernel_with_its_own_option_is_one_module_and_one_table_line(rwm, monkeypatch, tmp_path, capsys):
    """The kernel goes through the whole conformance suite by being in the table, and its declared option
    reaches SamplerOptions, refine() and the command line (help, parsing, validation, 'does not apply')."""
    check_gaussian(rwm)
    check_mixture(rwm)
    check_determinism(rwm)
    check_resume(rwm)
    check_block_alone_equals_block_in_a_loop(rwm)
    check_accounting(rwm, monkeypatch)
    check_bad_options(rwm)

    assert SamplerOptions(scale=0.5).scale == 0.5 and SamplerOptions().scale == 1.0
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        SamplerOptions(scale=-1.0)
    from latentmcmc.refinement import refine

    result = refine(nn.Identity(), nn.Sequential(nn.Linear(2, 1)), (2,), num_chains=20, sampler="rwm", scale=0.5,
                    steps=5, warmup=5, progress=False)
    assert result.chains.sampler == "RandomWalkMetropolis"
    main(["refine", "--help"])  # the help is built when the CLI runs: the entry added after import is listed
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "rwm: random-walk Metropolis" in text and "--scale" in text and "[rwm]" in text
    ckpt = ROOT / "latentmcmc" / "assets" / "demo_gaussians25.pt"
    common = ["--chains", "10", "--steps", "4", "--warmup", "4", "--no-figures", "-q"]
    assert main(["refine", str(ckpt), "--sampler", "rwm", "--scale", "0.3", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["refine", str(ckpt), "--sampler", "rwm", "--scale", "-1", *common, "--out", str(tmp_path / "b")]) == 2
    assert "error: --scale must be a finite number > 0, got -1.0" in capsys.readouterr().err
    assert main(["refine", str(ckpt), "--scale", "0.3", *common, "--out", str(tmp_path / "c")]) == 0
    assert "warning: --scale does not apply to --sampler mala; ignored" in capsys.readouterr().err


class OldRandomWalkProposer:
    """The same proposer written against the 0.2.0.dev contract (``eps`` where ``params`` now go)."""

    def init(self, target, z):
        return gradient_state(target, z)

    def draw_noise(self, state: SamplerState, rng):
        return torch.randn(state.z.shape, generator=rng, dtype=state.z.dtype, device=state.z.device)

    def propose(self, target, state, eps, xi):
        z_new = state.z + eps.sqrt().reshape(-1, *([1] * (state.z.dim() - 1))) * xi
        energy, grad = target.value_and_grad(z_new)
        return Proposal(z_new, energy, grad, state.energy - energy)


@pytest.mark.slow
def test_a_kernel_of_the_old_contract_still_samples_and_warns():
    class OldRandomWalk(Sampler):
        default_target_accept = 0.234

        def make_kernel(self):
            return MetropolisHastings(OldRandomWalkProposer())

    mean, cov = random_gaussian(3, 10.0, seed=3)
    with pytest.warns(DeprecationWarning, match="take params instead"):
        sampler = OldRandomWalk(gaussian_energy(mean, cov), eps=0.5)
    chains = sampler.run(exact_draws(mean, cov, 300, seed=4), steps=600, warmup=200, thin=3, seed=5)
    assert 0.1 < float(chains.acceptance_rate.mean()) < 0.5  # adapted towards 0.234
    assert_gaussian_moments(chains.draws, mean, cov)


# ---------------------------------------------------------------------- tables behind the CLI
def test_cli_choices_and_help_come_from_the_tables(capsys):
    from latentmcmc.energy import COMPILE_MODES
    from latentmcmc.samplers.schedules import SCHEDULES
    from latentmcmc.training import DATASETS, ENTROPY_TERMS

    main(["refine", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in (*SAMPLERS, *SCHEDULES, *COMPILE_MODES):
        assert name in text, name
    main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in (*DATASETS, *ENTROPY_TERMS):
        assert name in text, name
    assert main(["refine", "--sampler", "nope"]) == 2
    assert "choose one of " + ", ".join(SAMPLERS) in capsys.readouterr().err


def test_every_named_sampler_builds_and_knows_whether_it_anneals():
    from latentmcmc.samplers import SamplerOptions, make_sampler

    for name, entry in SAMPLERS.items():
        sampler = make_sampler(name, lambda z: 0.5 * z.square().sum(1), SamplerOptions(eps=0.1, schedule="sigmoid"))
        assert isinstance(sampler, entry.cls) and entry.anneals == name.startswith("annealed")
        assert entry.summary and ("schedule" in entry.options) == entry.anneals
        if entry.anneals:
            assert sampler.schedule == "sigmoid"


# ---------------------------------------------------------------------- latentmcmc 0.1 names
def test_generator_keyword_still_works_and_warns():
    energy = lambda z: 0.5 * z.square().sum(1)  # noqa: E731
    z0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    new = MALA(energy, eps=0.3).run(z0, steps=5, rng=torch.Generator().manual_seed(1))
    with pytest.warns(DeprecationWarning, match="rng="):
        old = MALA(energy, eps=0.3).run(z0, steps=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(new.draws, old.draws)
    sampler = MALA(energy, eps=0.3)
    with pytest.warns(DeprecationWarning, match="rng="):
        sampler.step(sampler.init(z0), generator=torch.Generator().manual_seed(2))


def test_chains_keyword_of_refine_and_the_0_1_table_still_work():
    from latentmcmc.refinement import SAMPLERS as OLD_TABLE
    from latentmcmc.refinement import make_sampler, refine

    with pytest.warns(DeprecationWarning, match="num_chains"):
        result = refine(nn.Identity(), nn.Sequential(nn.Linear(2, 1)), (2,), chains=6, steps=4, warmup=2,
                        progress=False)
    assert result.z.shape == (6, 2)
    assert OLD_TABLE["mala"].default_target_accept == 0.574  # the entry answers for its class
    assert isinstance(OLD_TABLE["annealed-mala"](lambda z: z.square().sum(1), eps=0.1), AnnealedMALA)
    with pytest.warns(DeprecationWarning, match="make_sampler"):
        assert isinstance(make_sampler("mala", lambda z: z.square().sum(1), 0.1), MALA)
    with pytest.raises(TypeError, match="unknown refinement option"):
        refine(nn.Identity(), nn.Sequential(nn.Linear(2, 1)), (2,), num_chians=6)


@pytest.mark.parametrize("old,new", [("latentmcmc.export", "latentmcmc.io.arviz"),
                                     ("latentmcmc.exported", "latentmcmc.io.torch_export")])
def test_renamed_modules_still_import_and_warn(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    for name in module.__all__:
        assert callable(getattr(module, name))


def test_log_normalizer_ess_is_importance_ess():
    z0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chains = AnnealedMALA(lambda z: 0.5 * z.square().sum(1), eps=0.2).run(z0, steps=2, warmup=5, seed=0)
    est = chains.log_normalizer()
    with pytest.warns(DeprecationWarning, match="importance_ess"):
        assert est.ess == est.importance_ess


def test_no_deprecation_warning_on_the_current_api(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        z0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
        chains = MALA(lambda z: 0.5 * z.square().sum(1), eps=0.3).run(z0, steps=5, seed=1)
        chains.save(tmp_path / "run.nc")
        from latentmcmc import Chains

        assert torch.equal(Chains.load(tmp_path / "run.nc").draws, chains.draws)


@pytest.mark.slow
def test_the_architecture_docs_example_kernel_runs_as_written(monkeypatch):
    """docs/architecture.md shows a whole kernel with its own option; it must work as printed."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text()
    code = re.search(r"```python\n(import torch\nfrom latentmcmc\.samplers import.*?)```", doc, re.S).group(1)
    monkeypatch.setitem(SAMPLERS, "rwm", SAMPLERS["mala"])  # restored after the test; the example replaces it
    exec(code, {})
    entry = SAMPLERS["rwm"]
    mean, cov = random_gaussian(3, 4.0, seed=8)
    chains = entry(gaussian_energy(mean, cov), eps=0.5, scale=0.8).run(exact_draws(mean, cov, 300, seed=9), steps=300,
                                                                       warmup=100, seed=1, progress=False)
    assert_gaussian_moments(chains.draws, mean, cov)


def test_a_sampler_option_may_not_take_a_refinement_option_s_name(monkeypatch, capsys):
    from latentmcmc.refinement import RefineOptions

    clashing = Option("beta", 1.0, "A sampler option named like the refinement's beta.", float, positive_number)

    class Clash(RandomWalkMetropolis):
        options = (EPS, clashing, COMPILE)

        def make_kernel(self):
            return MetropolisHastings(RandomWalkProposer(1.0))

    monkeypatch.setitem(SAMPLERS, "clash", SamplerEntry(Clash, "a sampler whose option clashes"))
    with pytest.raises(TypeError, match="sampler option.* beta take the name of a refinement option"):
        RefineOptions()
    assert main(["refine", "--help"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the option name(s) beta are declared twice" in err[0]
