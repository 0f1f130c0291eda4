"""Every entry of the ``SAMPLERS`` table (and of ``METHODS`` where it applies) through one suite.

A kernel is tested by being in the table; the checks live in ``helpers/conformance.py`` (which says what
each one holds a kernel to), so a kernel added to the table inside a test runs them too
(``tests/test_package.py``).
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers.conformance import (
    OPTIONS,
    check_accounting,
    check_bad_options,
    check_block_alone_equals_block_in_a_loop,
    check_determinism,
    check_fused,
    check_gaussian,
    check_mixture,
    check_one_chain,
    check_prior,
    check_resume,
    small_latent_energy,
)
from helpers.mc import ALPHA, z_threshold
from torch import nn

from latentmcmc.methods import METHODS, Problem
from latentmcmc.samplers import SAMPLERS, SamplerOptions, make_sampler

# A sampler that fits a flow in warm-up takes seconds per check: those runs are in the slow set.
NAMES = [pytest.param(name, marks=pytest.mark.slow) if "flow" in entry.options else name
         for name, entry in SAMPLERS.items()]


@pytest.mark.parametrize("name", NAMES)
def test_gaussian_moments(name):
    check_gaussian(name)


@pytest.mark.parametrize("name", NAMES)
def test_mixture_region_probabilities_match_the_grid_truth(name):
    check_mixture(name)


# every sampler under each prior in the full suite; MALA and i-SIR under the uniform one in the quick subset
PRIOR_CASES = [pytest.param(name, spec, marks=() if (name, spec) in {("mala", "uniform:-1,1"), ("isir", "uniform:-1,1")}
                            else pytest.mark.slow) for name in SAMPLERS for spec in ("uniform:-1,1", "student-t:5")]


@pytest.mark.parametrize("name,spec", PRIOR_CASES)
def test_other_priors_region_probabilities_match_the_grid_truth(name, spec):
    check_prior(name, spec)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_draws_and_repeated_runs_agree(name):
    check_determinism(name)


@pytest.mark.parametrize("name", NAMES)
def test_one_chain_runs(name):
    check_one_chain(name)


@pytest.mark.parametrize("name", NAMES)
def test_a_block_gives_the_same_draws_alone_or_in_a_loop(name):
    check_block_alone_equals_block_in_a_loop(name)


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_a_checkpoint_gives_the_uninterrupted_draws(name):
    check_resume(name)


def test_resume_is_refused_with_other_sampler_options(tmp_path):
    z0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "state.pt"
    kwargs = dict(steps=6, warmup=4, seed=5, progress=False, checkpoint=path, checkpoint_every=3)
    make_sampler("hmc", small_latent_energy(), SamplerOptions(leapfrog_steps=5)).run(z0, **kwargs)
    with pytest.raises(ValueError, match="leapfrog_steps=5, not 2"):
        make_sampler("hmc", small_latent_energy(), SamplerOptions(leapfrog_steps=2)).run(z0, resume=True, **kwargs)


@pytest.mark.slow  # compiles a graph per sampler
@pytest.mark.parametrize("name", NAMES)
def test_fused_blocks_equal_the_eager_run(name):
    check_fused(name)


@pytest.mark.slow  # compiles a graph per sampler
@pytest.mark.parametrize("name", ["annealed-mala", "mala"])
def test_fused_blocks_equal_the_eager_run_under_a_uniform_prior(name):
    """The prior's energy and gradient in compiled blocks, in the target and along the annealing path."""
    check_fused(name, prior="uniform:-1,1")


@pytest.mark.parametrize("name", NAMES)
def test_model_passes_are_counted_as_they_happen(name, monkeypatch):
    check_accounting(name, monkeypatch)


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise_a_value_error_naming_the_option(name):
    check_bad_options(name)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_deterministic_and_keeps_to_its_budget(name):
    if name == "flex2mcmc":
        pytest.importorskip("zuko")
    problem = Problem(nn.Identity(), nn.Sequential(nn.Linear(2, 1)), (2,), beta=1.0, sampler_options=OPTIONS)
    z0 = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    first, again = METHODS[name].run(problem, z0, 40, 7), METHODS[name].run(problem, z0, 40, 7)
    assert first.z.shape == z0.shape and bool(torch.isfinite(first.z).all())
    assert torch.equal(first.z, again.z)
    per_sample = first.evaluations.passes
    assert per_sample <= 40 + 2 * 10, per_sample  # at most the budget and a step's worth (HMC's 2 x leapfrog steps)


def test_alpha_is_the_suite_s_false_alarm_rate():
    """The thresholds above are Bonferroni-corrected normal quantiles at family-wise rate ALPHA."""
    assert ALPHA == 1e-3 and math.isclose(z_threshold(1), 3.2905, rel_tol=1e-4)
