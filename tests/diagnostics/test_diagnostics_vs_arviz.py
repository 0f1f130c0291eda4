"""Our torch ESS / R-hat / MCSE / summary against ArviZ on the same arrays (1e-6 relative, float64)."""

import warnings

import numpy as np
import pytest
import torch

from latentmcmc.diagnostics import ess, mcse, rhat, rhat_nested, summary

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RTOL = 1e-6
SHAPES = [(4, 100), (4, 101, 3), (3, 7, 2), (2, 1000, 5), (8, 5, 1), (5, 4, 2), (1, 50, 2), (6, 40, 30), (80, 60, 2)]
ESS_METHODS = [("bulk", None), ("tail", None), ("tail", 0.1), ("mean", None), ("sd", None), ("quantile", 0.3),
               ("median", None), ("identity", None)]
RHAT_METHODS = ["rank", "split", "identity", "folded", "z_scale"]
MCSE_METHODS = [("mean", None), ("sd", None), ("median", None), ("quantile", 0.8)]


def draws_for(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).cumsum(1) * 0.1 + rng.standard_normal(shape)
    if len(shape) > 2:
        n = shape[1] - 1
        x[:, 1:n:3, 0] = x[:, 0 : n - 1 : 3, 0]  # repeated values, as MALA rejections make
    return x


def per_parameter(fn, x):
    if x.ndim == 2:
        return np.asarray(fn(x))
    return np.array([fn(x[..., i]) for i in range(x.shape[2])])


def assert_agrees(ours, ref):
    ours = ours.numpy().reshape(ref.shape)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=RTOL, atol=0)


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


CASES = [(ess, "ess", m, p) for m, p in ESS_METHODS] + [(mcse, "mcse", m, p) for m, p in MCSE_METHODS]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ours,name,method,prob", CASES, ids=[f"{c[1]}-{c[2]}-{c[3]}" for c in CASES])
def test_ess_and_mcse(shape, ours, name, method, prob):
    x = draws_for(shape, 0 if name == "ess" else 2)
    kw = {} if prob is None else {"prob": prob}
    ref = per_parameter(lambda a: getattr(az, name)(a, method=method, **kw), x)
    assert_agrees(ours(torch.tensor(x), method=method, **kw), ref)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s[0] > 1])
@pytest.mark.parametrize("method", RHAT_METHODS)
def test_rhat(shape, method):
    x = draws_for(shape, 1)
    ref = per_parameter(lambda a: az.rhat(a, method=method), x)
    assert_agrees(rhat(torch.tensor(x), method=method), ref)


def test_relative_ess():
    x = draws_for((4, 100, 3), 3)
    ref = per_parameter(lambda a: az.ess(a, relative=True), x)
    assert_agrees(ess(torch.tensor(x), relative=True), ref)


def test_float32_input_agrees():
    x = draws_for((4, 200, 6), 4).astype(np.float32)
    assert_agrees(ess(torch.tensor(x)), per_parameter(az.ess, x.astype(np.float64)))
    assert_agrees(rhat(torch.tensor(x)), per_parameter(az.rhat, x.astype(np.float64)))


def test_many_parameters_in_chunks(monkeypatch):
    from latentmcmc.diagnostics import convergence

    monkeypatch.setattr(convergence, "CHUNK_VALUES", 1000)  # force many chunks
    x = draws_for((4, 50, 40), 5)
    assert_agrees(ess(torch.tensor(x)), per_parameter(az.ess, x))
    assert_agrees(rhat(torch.tensor(x)), per_parameter(az.rhat, x))


@pytest.mark.parametrize("shape", [(4, 101, 3), (4, 100, 3), (1, 60, 2), (3, 9, 4)])  # odd and even draws: two paths
def test_summary_agrees_with_arviz_summary(shape):
    x = draws_for(shape, 6)
    ours = summary(torch.tensor(x))
    ref = az.summary(az.from_dict(posterior={"z": x}), round_to="none")
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=RTOL, atol=1e-12)
    assert list(ours.columns) == list(ref.columns)


@pytest.mark.parametrize("bad", ["nan", "constant"])
def test_degenerate_parameters_match(bad):
    x = draws_for((4, 50, 3), 7)
    if bad == "nan":
        x[1, 5, 1] = np.nan
    else:
        x[..., 1] = 2.5
    for fn, ref_fn in [(ess, az.ess), (rhat, az.rhat)]:
        assert_agrees(fn(torch.tensor(x)), per_parameter(ref_fn, x))


arviz_stats = pytest.importorskip("arviz_stats", reason="arviz-stats (the ArviZ 1.x engine) is not installed")


@pytest.mark.parametrize("shape", [(4, 101, 3), (3, 7, 2), (2, 400, 4)])
def test_agrees_with_arviz_stats(shape):
    """ArviZ 1.x computes the same numbers, except mcse(sd), whose ESS arviz-stats now takes of x itself."""
    x = draws_for(shape, 8)
    for method, kw in [("bulk", {}), ("tail", {"prob": (0.05, 0.95)}), ("mean", {}), ("sd", {}), ("median", {})]:
        ref = np.asarray(arviz_stats.ess(x, method=method, chain_axis=0, draw_axis=1, **kw))
        assert_agrees(ess(torch.tensor(x), method=method, **kw), ref)
    for method in RHAT_METHODS:
        ref = np.asarray(arviz_stats.rhat(x, method=method, chain_axis=0, draw_axis=1))
        assert_agrees(rhat(torch.tensor(x), method=method), ref)
    for method in ("mean", "median"):
        ref = np.asarray(arviz_stats.mcse(x, method=method, chain_axis=0, draw_axis=1))
        assert_agrees(mcse(torch.tensor(x), method=method), ref)


@pytest.mark.parametrize("method", ["rank", "folded", "z_scale", "split", "identity"])
@pytest.mark.parametrize("chains,draws,superchains", [(12, 51, 4), (40, 8, 10), (6, 200, 2)])
def test_nested_rhat_agrees_with_arviz_stats(method, chains, draws, superchains):
    x = draws_for((chains, draws, 3), 9)
    x[: chains // superchains] += 0.5  # one superchain off: a large nested R-hat too
    ids = np.repeat(np.arange(superchains), chains // superchains)
    ref = np.asarray(arviz_stats.rhat_nested(x, superchain_ids=ids, method=method, chain_axis=0, draw_axis=1))
    assert_agrees(rhat_nested(torch.tensor(x), superchains, method), ref)
    shuffled = np.random.default_rng(0).permutation(ids)  # ids in any order
    ref = np.asarray(arviz_stats.rhat_nested(x, superchain_ids=shuffled, method=method, chain_axis=0, draw_axis=1))
    assert_agrees(rhat_nested(torch.tensor(x), torch.tensor(shuffled), method), ref)


def test_summary_with_too_few_draws_keeps_mean_sd_and_hdi():
    """Under 4 draws ESS, R-hat and MCSE are NaN (with a warning) but mean, sd and the HDI are ArviZ's."""
    x = draws_for((4, 3, 2), 7)
    ours = summary(torch.tensor(x))
    ref = az.summary(az.from_dict(posterior={"z": x}), round_to="none")
    np.testing.assert_allclose(ours.iloc[:, :4].to_numpy(), ref.iloc[:, :4].to_numpy(), rtol=RTOL, atol=1e-12)
    assert ours[["ess_bulk", "ess_tail", "r_hat", "mcse_mean"]].isna().all().all()
