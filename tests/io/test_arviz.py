"""The ArviZ export (InferenceData and DataTree), NetCDF round trips, and ArviZ functions on it."""

import warnings

import numpy as np
import pytest
import torch

from latentmcmc import MALA, AnnealedMALA, Chains, Langevin

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


@pytest.fixture(scope="module")
def run():
    return MALA(lambda z: 0.5 * z.square().sum((1, 2)), eps=0.3).run(
        torch.randn(4, 2, 3), steps=60, warmup=20, seed=1, keep_warmup=True, thin=2
    )


def assert_same_run(a: Chains, b: Chains):
    for name in ("draws", "energy", "accept_prob", "diverging", "eps", "acceptance_rate", "divergences",
                 "frozen", "warmup_draws", "warmup_energy", "warmup_accept_prob", "warmup_eps", "warmup_diverging"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x.cpu(), y.cpu()), name
    assert (a.sampler, a.seed, a.warmup, a.steps, a.thin) == (b.sampler, b.seed, b.warmup, b.steps, b.thin)


def test_inference_data_groups_and_values(run):
    idata = run.to_inference_data("inference_data")
    assert set(idata.groups()) >= {"posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats"}
    np.testing.assert_array_equal(idata.posterior["z"].values, run.draws.numpy())
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, -run.energy.numpy())
    assert idata.posterior["z"].dims == ("chain", "draw", "z_dim_0", "z_dim_1")
    assert idata.sample_stats["diverging"].dtype == bool


def test_arviz_functions_work_unchanged(run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    idata = run.to_inference_data("inference_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata)
        assert len(table) == 6
        assert az.ess(idata)["z"].shape == (2, 3)
        assert az.rhat(idata)["z"].shape == (2, 3)
        axes = az.plot_trace(idata, var_names=["z"], compact=True)
    assert axes.shape[0] == 1


@pytest.mark.parametrize("kind", ["inference_data", "datatree"])
@pytest.mark.slow
def test_netcdf_round_trip(run, tmp_path, kind):
    if kind == "datatree":
        pytest.importorskip("arviz_base")
    path = run.save(tmp_path / "run.nc", kind=kind)
    assert_same_run(run, Chains.load(path))
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind


@pytest.mark.parametrize("kind", ["inference_data", "datatree"])
@pytest.mark.slow
def test_zarr_round_trip(run, tmp_path, kind):
    pytest.importorskip("zarr")
    if kind == "datatree":
        pytest.importorskip("arviz_base")
    path = run.save(tmp_path / "run.zarr", kind=kind)
    assert_same_run(run, Chains.load(path))
    run.save(path, kind=kind)  # overwriting an existing store replaces it whole
    assert_same_run(run, Chains.load(path))
    assert [p.name for p in tmp_path.iterdir()] == ["run.zarr"]  # no temporary store left behind


@pytest.mark.slow
def test_failed_zarr_write_leaves_nothing_half_written(run, tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    import xarray as xr

    path = run.save(tmp_path / "run.zarr")
    before = sorted(p.relative_to(tmp_path) for p in path.rglob("*"))

    def crash(self, store, *args, **kwargs):
        import os

        os.makedirs(store)
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_zarr", crash)
    from latentmcmc.atomic import WriteError

    with pytest.raises(WriteError, match="could not write .*run.zarr.*the previous run.zarr .* is intact"):
        run.save(path)
    assert sorted(p.relative_to(tmp_path) for p in path.rglob("*")) == before  # old store intact
    assert [p.name for p in tmp_path.iterdir()] == ["run.zarr"]  # the partial store was removed


@pytest.mark.slow
def test_round_trip_keeps_langevin_and_annealed_extras(tmp_path):
    lang = Langevin(lambda z: 0.5 * z.square().sum(1), eps=0.1).run(torch.randn(3, 2), steps=10, seed=2)
    back = Chains.load(lang.save(tmp_path / "l.nc"))
    torch.testing.assert_close(back.mh_accept_rate, lang.mh_accept_rate)
    ann = AnnealedMALA(lambda z: 0.5 * z.square().sum(1), eps=0.1).run(torch.randn(3, 2), steps=5, warmup=10, seed=3)
    back = Chains.load(ann.save(tmp_path / "a.nc"))
    torch.testing.assert_close(back.log_weights, ann.log_weights)
    assert back.log_normalizer() == ann.log_normalizer()


def test_datatree_export_shape(run):
    pytest.importorskip("arviz_base")
    tree = run.to_inference_data("datatree")
    assert set(tree.children) >= {"posterior", "sample_stats", "warmup_posterior"}
    np.testing.assert_array_equal(tree["posterior"]["z"].values, run.draws.numpy())


def test_datatree_export_keeps_quiet_about_more_chains_than_draws(run, monkeypatch):
    """Chains-first with more chains than draws is a refinement run's layout: ArviZ 1.x's guess (its
    arviz-base 1.3 words it "Found chain dimension to be longer than draw dimension") is not shown."""
    arviz_base = pytest.importorskip("arviz_base")
    real = arviz_base.from_dict

    def from_dict(*args, **kwargs):
        warnings.warn("Found chain dimension to be longer than draw dimension, check dimensions are correctly "
                      "named.", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(arviz_base, "from_dict", from_dict)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.to_inference_data("datatree")


def test_load_refuses_what_is_not_a_run(tmp_path):
    bad = tmp_path / "x.nc"
    bad.write_bytes(b"not a netcdf file")
    with pytest.raises(ValueError, match="not a saved latentmcmc run"):
        Chains.load(bad)
    with pytest.raises(ValueError, match="no saved run"):
        Chains.load(tmp_path / "missing.nc")
    with pytest.raises(ValueError, match="kind"):
        MALA(lambda z: z.square().sum(1), eps=0.1).run(torch.randn(2, 2), steps=4).to_inference_data("pickle")


@pytest.mark.slow
def test_runs_saved_by_0_1_with_step_size_still_load(run, tmp_path):
    """latentmcmc 0.1 stored the step size as ``step_size``; it is ``eps`` now (our convention, not
    BlackJAX's step_size = eps / 2).  Old files load with the same values."""
    idata = run.to_inference_data("inference_data")
    assert "eps" in idata.sample_stats and "step_size" not in idata.sample_stats
    old = idata.copy()
    for group in ("sample_stats", "warmup_sample_stats"):
        old[group] = old[group].rename({"eps": "step_size"})
    for group in ("sample_stats", "warmup_sample_stats"):
        old[group].attrs.pop("chain_eps", None)  # 0.1 files kept eps per chain too; the fallback reads the draws
    old.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    loaded = Chains.load(tmp_path / "old.nc")
    assert torch.equal(loaded.eps, run.eps) and torch.equal(loaded.warmup_eps, run.warmup_eps)


def test_global_kernels_keep_their_jump_rate_and_model_passes(tmp_path):
    from latentmcmc import ISIR

    run = ISIR(lambda z: 0.5 * z.square().sum(1), candidates=4).run(torch.randn(6, 2), steps=8, seed=0)
    run.save(tmp_path / "isir.nc")
    loaded = Chains.load(tmp_path / "isir.nc")
    assert torch.equal(loaded.jump_rate, run.jump_rate) and loaded.evaluations == run.evaluations == (1 + 8 * 3, 0)
    assert bool(torch.isnan(loaded.eps).all())  # i-SIR has no step size
