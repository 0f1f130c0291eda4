"""Diagnostics on known answers, degenerate input, acceptance summaries and the summary table."""

import math
import warnings

import pytest
import torch
from helpers.mc import z_threshold

from latentmcmc import MALA
from latentmcmc.diagnostics import (
    acceptance_summary,
    ess,
    ess_rhat,
    hdi,
    mcse,
    rhat,
    running_acceptance,
    summary,
)


def ar1(phi, chains, draws, params, seed):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(chains, draws, params, generator=g, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


# Geyer's truncated estimator has a finite-sample bias of a few percent at these lengths (Vehtari et
# al. 2021, fig. 3); the allowance below is that, on top of 4 standard errors of the mean estimate
# over 100 independent parameters.
ESTIMATOR_BIAS = 0.03


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("method", ["bulk", "mean"])
def test_ar1_ess_per_draw(phi, method):
    x = ar1(phi, 4, 2000, 100, seed=int(phi * 10))
    per_draw = ess(x, method=method) / (4 * 2000)
    truth = (1 - phi) / (1 + phi)
    rel = per_draw / truth
    se = float(rel.std() / math.sqrt(rel.numel()))
    assert abs(float(rel.mean()) - 1.0) < ESTIMATOR_BIAS + 4 * se, (float(rel.mean()), se)


def test_stuck_chains_have_large_rhat():
    x = torch.randn(4, 500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[2:] += 3.0  # two chains in another mode
    assert bool((rhat(x) > 1.5).all())
    ok = torch.randn(4, 500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert bool((rhat(ok) < 1.01).all())


def test_too_few_draws_or_chains_give_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="too few draws"):
        assert bool(torch.isnan(ess(torch.randn(4, 3, 2))).all())
    with pytest.warns(RuntimeWarning, match="too few chains.*chains=1"):
        assert bool(torch.isnan(rhat(torch.randn(1, 100, 2))).all())


def test_nan_draws_give_nan_for_that_parameter_only():
    x = torch.randn(4, 100, 3, dtype=torch.float64)
    x[0, 10, 1] = float("nan")
    with pytest.warns(RuntimeWarning, match="NaN"):
        out = ess(x)
    assert torch.isnan(out[1]) and not torch.isnan(out[0]) and not torch.isnan(out[2])


def test_constant_chains_are_defined():
    x = torch.full((4, 100, 2), 1.5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert torch.equal(ess(x), torch.full((2,), 400.0, dtype=torch.float64))  # as ArviZ
        assert bool(torch.isnan(rhat(x)).all())


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ess(torch.randn(5)), "shape"),
        (lambda: ess(torch.randn(4, 10), method="fast"), "unknown ess method"),
        (lambda: ess(torch.randn(4, 10), method="quantile"), "prob"),
        (lambda: rhat(torch.randn(4, 10), method="x"), "unknown rhat method"),
        (lambda: mcse(torch.randn(4, 10), method="x"), "unknown mcse method"),
        (lambda: summary(torch.randn(4, 10), hdi_prob=1.5), "hdi_prob"),
        (lambda: hdi(torch.randn(4, 10), prob=1.5), "hdi prob"),
        (lambda: hdi(torch.randn(4, 10), prob=0.0), "hdi prob"),
        (lambda: ess(torch.randn(4, 100, 0)), "at least one"),
        (lambda: ess_rhat(torch.randn(0, 100)), "at least one"),
        (lambda: summary(torch.randn(4, 0, 2)), "at least one"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_shapes_and_dtypes():
    x = torch.randn(4, 50, 2, 3)
    assert ess(x).shape == (2, 3) and ess(x).dtype == torch.float64
    assert rhat(x[..., 0, 0]).shape == ()
    assert hdi(x).shape == (2, 3, 2)


@pytest.fixture(scope="module")
def run():
    return MALA(lambda z: 0.5 * z.square().sum(1), eps=0.5).run(torch.randn(8, 5), steps=400, warmup=100, seed=0)


def test_acceptance_summary(run):
    s = acceptance_summary(run)
    assert abs(s.mean - float(run.accept_prob.mean())) < 1e-6
    assert s.divergences == 0 and s.frozen == 0 and s.mh_mean is None
    cum = running_acceptance(run)
    torch.testing.assert_close(cum[:, -1], run.accept_prob.double().mean(1))
    win = running_acceptance(run, window=10)
    torch.testing.assert_close(win[:, -1], run.accept_prob[:, -10:].double().mean(1))
    torch.testing.assert_close(win[:, 3], run.accept_prob[:, :4].double().mean(1))


def test_summary_of_chains_has_energy_first_and_is_bounded(run):
    table = summary(run)
    assert list(table.index) == ["energy", "z[0]", "z[1]", "z[2]", "z[3]", "z[4]"]
    # the truth is N(0, I): the means are within their MCSE, jointly
    z = (table.loc["z[0]":, "mean"] / table.loc["z[0]":, "mcse_mean"]).abs()
    assert float(z.max()) < z_threshold(5)
    short = summary(run, max_rows=3)
    assert len(short) == 3 and short.index[0] == "energy" and short.attrs["omitted"] == 3
    assert short["r_hat"].iloc[1] >= short["r_hat"].iloc[2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randn(4, 300, 20, dtype=torch.float64)
    for fn in (ess, rhat, mcse):
        torch.testing.assert_close(fn(x.cuda()).cpu(), fn(x))


def test_nested_rhat_sees_superchains_that_disagree_where_each_chain_is_short():
    """2,000 chains of 10 draws in 100 superchains: iid draws give a nested R-hat near 1; superchains that
    started in different places (offsets of 0.2 sd, as chains that have not forgotten their start) push
    it well above 1.01, while each chain alone is too short for the classic split R-hat to say much."""
    from latentmcmc.diagnostics import rhat_nested

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 10, generator=g, dtype=torch.float64)
    assert float(rhat_nested(x, 100)) < 1.01
    offsets = 0.2 * torch.randn(100, generator=g, dtype=torch.float64).repeat_interleave(20)
    assert float(rhat_nested(x + offsets[:, None], 100)) > 1.01
    assert torch.equal(rhat(x, method="nested", superchains=100), rhat_nested(x, 100))


def test_nested_rhat_rejects_unequal_superchains():
    from latentmcmc.diagnostics import rhat_nested

    x = torch.randn(6, 20, dtype=torch.float64)
    with pytest.raises(ValueError, match="equal numbers"):
        rhat_nested(x, torch.tensor([0, 0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="divide"):
        rhat_nested(x, 4)
    with pytest.raises(ValueError, match="superchains="):
        rhat(x, method="nested")


@pytest.mark.parametrize("shape", [(4, 100, 3), (5, 101, 2), (1, 40, 2), (3, 9, 1)])
def test_ess_rhat_from_one_sort_equals_the_separate_diagnostics(shape):
    """Shared intermediates change nothing: odd draws (splitting drops the middle one), repeated draws
    (MALA rejections make ties), one chain (no R-hat) and a NaN parameter."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64).cumsum(1)
    x[:, 1::3] = x[:, 0::3][:, : x[:, 1::3].shape[1]]  # ties
    if shape[2] > 1:
        x[0, 2, 1] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bulk, tail, r = ess_rhat(x)
        torch.testing.assert_close(bulk, ess(x), rtol=1e-12, atol=0, equal_nan=True)
        torch.testing.assert_close(tail, ess(x, method="tail"), rtol=1e-12, atol=0, equal_nan=True)
        torch.testing.assert_close(r, rhat(x) if shape[0] > 1 else torch.full_like(r, float("nan")), rtol=1e-12, atol=0,
                                   equal_nan=True)


def near_ties(seed):
    """Rows with values that agree to their last bits (below the packed sort's kept bits), exact ties,
    signed zeros and infinities, in random order."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(4, 3000, generator=g, dtype=torch.float64)
    v[0, :600] = 1.0 + torch.arange(600, dtype=torch.float64) * 2.2e-16  # consecutive doubles above 1
    v[1, :300] = -(1.0 + torch.arange(300, dtype=torch.float64) * 2.2e-16)
    v[1, 300:600] = v[1, :300]  # exact ties among them
    v[2, :10], v[2, 10:20], v[2, 20], v[2, 21] = 0.0, -0.0, float("inf"), -float("inf")
    v[3, 1::2] = v[3, ::2]
    return v[:, torch.randperm(v.shape[1], generator=g)].contiguous()


def test_sort_rows_orders_values_equal_to_the_last_bits():
    """The CPU sort packs positions into the low bits of integer keys; values whose keys agree above
    those bits must still come out in order (the runs are re-sorted)."""
    from latentmcmc.diagnostics.convergence import sort_rows

    v = near_ties(0)
    values, order = sort_rows(v)
    assert torch.equal(values, torch.sort(v, dim=-1).values)
    assert torch.equal(torch.take_along_dim(v, order, dim=-1), values)
    assert torch.equal(order.sort(dim=-1).values, torch.arange(v.shape[1]).expand_as(order))


def test_rank_scores_and_folded_ranks_equal_scipy_on_near_ties():
    """Normal scores of the average ranks (scipy's rankdata) of the draws and of |x - median|."""
    import numpy as np
    from scipy.special import ndtri
    from scipy.stats import rankdata

    from latentmcmc.diagnostics.convergence import _fold, _folded_ranks, rank_normalize

    x = near_ties(1).reshape(4, 6, 500)  # (params, chains, draws)
    n = 6 * 500
    for ours, data in ((rank_normalize(x), x), (_folded_ranks(x), _fold(x))):
        ranks = rankdata(data.reshape(4, -1).numpy(), axis=-1)
        expected = ndtri((ranks - 0.375) / (n + 0.25)).reshape(4, 6, 500)
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("tied", [0.0, 0.01, 0.05, 0.3, 0.9])
def test_tie_midpoints_equal_scipy_average_ranks(tied):
    """Both ways of finding runs of equal values (few ties: gather the tied positions; many, as MALA's
    rejections make: every element reads its run's midpoint) give scipy's average ranks."""
    import numpy as np
    from scipy.stats import rankdata

    from latentmcmc.diagnostics.convergence import _tie_midpoints, sort_rows

    g = torch.Generator().manual_seed(3)
    for p, n in ((3, 1000), (1, 7), (2, 2), (4, 5000)):
        v = torch.randn(p, n, generator=g, dtype=torch.float64)
        k = int(tied * n)
        if k:  # copy k random entries over k others (some copies land on copies: longer runs)
            src = torch.randint(0, n, (p, k), generator=g)
            v.scatter_(1, torch.randint(0, n, (p, k), generator=g), torch.gather(v, 1, src))
        values, _ = sort_rows(v)
        expected = 2 * rankdata(values.numpy(), axis=-1) - 2  # first + last, 0-based
        np.testing.assert_array_equal(_tie_midpoints(values).numpy(), expected)
    assert (_tie_midpoints(torch.zeros(3, 10, dtype=torch.float64)) == 9).all()


def test_chunks_on_worker_threads_equal_chunks_in_turn(monkeypatch):
    """Chunks computed side by side on the pool's threads give the numbers of the same chunks computed one
    after another, bit for bit (and those of one chunk to rounding)."""
    from latentmcmc.diagnostics import convergence

    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 60, 4, generator=g, dtype=torch.float64).cumsum(1)
    x[:, 1::3] = x[:, 0::3][:, : x[:, 1::3].shape[1]]  # ties
    whole = ess_rhat(x)
    monkeypatch.setattr(convergence, "CHUNK_VALUES", 400)  # one parameter per chunk
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    in_turn = ess_rhat(x)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two workers even on a one-core runner
    for a, b, c in zip(whole, in_turn, ess_rhat(x)):
        assert torch.equal(b, c)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
