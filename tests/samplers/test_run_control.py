"""Run control: stop rules end the recorded phase where the numbers say, warmup="auto" ends warm-up when eps
has settled, and a run resumed from its checkpoint gives exactly the draws of an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from helpers.mc import gaussian_energy, random_gaussian

from latentmcmc import HMC, ISIR, MALA, AnnealedMALA, Ex2MCMC, Langevin
from latentmcmc.diagnostics import rhat
from latentmcmc.samplers import Until

ENERGY = lambda z: 0.5 * z.square().sum(1) + 0.1 * z[:, 0] ** 4  # noqa: E731
GAUSS = lambda z: 0.5 * z.square().sum(1) + 0.5 * z[:, 0].square()  # noqa: E731


def z0(n=64, d=3, seed=0, scale=1.0):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ stop rules
def test_until_stops_at_the_first_check_where_the_rules_hold():
    rule = Until(rhat=1.01, min_ess=400, check_every=25)
    chains = MALA(GAUSS, eps=0.5).run(z0(200), steps=1000, warmup=100, seed=1, until=rule)
    n = chains.num_draws
    assert n < 1000 and n % 25 == 0 and chains.steps == n and "after" in chains.extra["stopped_by"]
    history = chains.extra["online_history"]
    assert history[-1][0] == n and history[-1][1] <= 1.01 and history[-1][2] >= 400  # it stopped where they held
    assert all(r > 1.01 or e < 400 for _, r, e in history[:-1])  # and at no earlier check
    # the monitored R-hat is the split R-hat of the draws it summarises (its complete batches)
    watched = torch.cat([chains.energy.unsqueeze(-1), chains.draws], -1)
    assert abs(float(rhat(watched, method="split").max()) - history[-1][1]) < 0.005


def test_until_reports_the_cap_when_the_rules_never_hold():
    chains = MALA(ENERGY, eps=0.5).run(z0(8), steps=60, seed=1, until=Until(min_ess=1e9, check_every=20))
    assert chains.num_draws == 60 and chains.extra["stopped_by"].startswith("max steps (60)")


def test_until_and_record_last_and_bad_rules():
    chains = MALA(ENERGY, eps=0.5).run(z0(100), steps=500, warmup=50, seed=2, record="last", until=Until(rhat=1.05))
    assert chains.num_draws == 1 and chains.steps < 500
    for kwargs in (dict(), dict(rhat=0.99), dict(min_ess=-1), dict(rhat=1.01, check_every=0), dict(rhat="1.01"),
                   dict(min_ess=True), dict(rhat=1.01, chains=1), dict(rhat=1.01, superchains=1),
                   dict(rhat=1.01, superchains=0)):
        with pytest.raises(ValueError, match="until|Until"):
            Until(**kwargs)


def test_stop_rules_that_cannot_apply_to_the_run_are_refused_or_flagged():
    """Superchains must divide the chains, R-hat needs two chains, and a rule that can never be checked
    (first check after the cap) is said, not silently reported as "max steps before ..."."""
    with pytest.raises(ValueError, match="superchains=3 must divide"):
        MALA(ENERGY, eps=0.5).run(z0(16), steps=20, until=Until(rhat=1.01, superchains=3))
    with pytest.raises(ValueError, match="superchains=32 must divide"):
        MALA(ENERGY, eps=0.5).run(z0(16), steps=20, until=Until(rhat=1.01, superchains=32))
    with pytest.raises(ValueError, match="at least 2 chains"):
        MALA(ENERGY, eps=0.5).run(z0(1), steps=20, until=Until(rhat=1.01))
    with pytest.warns(RuntimeWarning, match="no stop-rule check can happen"):
        MALA(ENERGY, eps=0.5).run(z0(8), steps=40, until=Until(rhat=1.5, check_every=50))


# ------------------------------------------------------------------ warmup="auto"
@pytest.mark.slow
def test_auto_warmup_ends_once_eps_has_settled():
    mean, cov = random_gaussian(5, 10.0, seed=3)
    chains = MALA(gaussian_energy(mean, cov), eps=1e-4).run(z0(256, 5), steps=200, warmup="auto", max_warmup=2000,
                                                            seed=4, keep_warmup=True)
    assert chains.extra["warmup_settled"] and 100 <= chains.warmup < 2000 and chains.warmup % 50 == 0
    assert chains.warmup_draws.shape[1] == chains.warmup
    assert abs(float(chains.acceptance_rate.mean()) - 0.574) < 0.05
    capped = MALA(gaussian_energy(mean, cov), eps=1e-8).run(z0(256, 5), steps=10, warmup="auto", max_warmup=100,
                                                            seed=4)
    assert capped.warmup == 100 and not capped.extra["warmup_settled"]  # eps still climbing from 1e-8
    at_cap = MALA(gaussian_energy(mean, cov), eps=0.3).run(z0(256, 5), steps=10, warmup="auto", max_warmup=100,
                                                           seed=4)
    assert at_cap.warmup == 100 and at_cap.extra["warmup_settled"]  # settled at the last window, which is the cap
    with pytest.raises(ValueError, match="warmup='auto'"):
        AnnealedMALA(ENERGY).run(z0(), steps=5, warmup="auto")
    with pytest.raises(ValueError, match="no eps"):
        ISIR(ENERGY).run(z0(), steps=5, warmup="auto")


# ------------------------------------------------------------------ resume
SAMPLERS = [
    lambda: MALA(ENERGY, eps=0.3),
    lambda: Langevin(ENERGY, eps=0.3),
    lambda: AnnealedMALA(ENERGY, eps=0.3),
    lambda: HMC(ENERGY, eps=0.2, leapfrog_steps=3, chees=True),
    lambda: Ex2MCMC(ENERGY, eps=0.3, candidates=4, local_steps=1,
                    proposal=torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64),
                                                                    4 * torch.eye(3, dtype=torch.float64))),
]


class Killed(Exception):
    """Stands in for the process dying right after a checkpoint."""


@pytest.mark.filterwarnings("ignore:HMC\\(chees=True\\)", "ignore:.*divergent:RuntimeWarning", "ignore:.*froze:RuntimeWarning")
@pytest.mark.parametrize("make", SAMPLERS)
@pytest.mark.parametrize("stop_after", [2, 5])  # checkpoints written before the "crash": in warm-up, in sampling
@pytest.mark.slow
def test_a_resumed_run_equals_the_uninterrupted_run(make, stop_after, tmp_path, monkeypatch):
    kwargs = dict(steps=30, warmup=40, seed=7, keep_warmup=True, thin=2)
    whole = make().run(z0(), **kwargs)
    path = tmp_path / "state.pt"
    import latentmcmc.samplers.base as base

    real_save = base.save_state
    written = {"n": 0}

    def save_then_die(p, payload):
        real_save(p, payload)
        written["n"] += 1
        if written["n"] == stop_after:
            raise Killed

    monkeypatch.setattr(base, "save_state", save_then_die)
    with pytest.raises(Killed):
        make().run(z0(), **kwargs, checkpoint=path, checkpoint_every=10)
    monkeypatch.setattr(base, "save_state", real_save)
    import latentmcmc.samplers.driver as driver

    real_step, taken = driver.Run.advance, {"n": 0}

    def counted(run):
        taken["n"] += 1
        real_step(run)

    monkeypatch.setattr(driver.Run, "advance", counted)
    resumed = make().run(z0(), **kwargs, checkpoint=path, checkpoint_every=10, resume=True)
    assert taken["n"] == 70 - 10 * stop_after  # it continued from the checkpoint, not from the start
    for name in ("draws", "energy", "accept_prob", "diverging", "eps", "last", "acceptance_rate", "divergences",
                 "warmup_draws", "warmup_eps", "log_weights", "jump_rate"):
        a, b = getattr(whole, name), getattr(resumed, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), name
    assert whole.evaluations == resumed.evaluations


def test_resume_refuses_other_arguments_and_missing_state(tmp_path):
    path = tmp_path / "state.pt"
    MALA(ENERGY, eps=0.3).run(z0(), steps=20, warmup=10, seed=1, checkpoint=path, checkpoint_every=5)
    with pytest.raises(ValueError, match="steps=20, not 25"):
        MALA(ENERGY, eps=0.3).run(z0(), steps=25, warmup=10, seed=1, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="other starting points"):
        MALA(ENERGY, eps=0.3).run(z0(seed=5), steps=20, warmup=10, seed=1, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="another seed"):
        MALA(ENERGY, eps=0.3).run(z0(), steps=20, warmup=10, seed=2, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="no saved run state"):
        MALA(ENERGY, eps=0.3).run(z0(), steps=20, checkpoint=tmp_path / "none.pt", resume=True)


@pytest.mark.slow
def test_a_resumed_run_keeps_the_monitors_summary(tmp_path, monkeypatch):
    """The monitor's batch sums travel in the checkpoint: the resumed run's online checks are the
    uninterrupted run's (to rounding: a checkpoint sums the buffered steps early, in another order)."""
    until = Until(min_ess=1e12, check_every=10)  # never holds: every check is made
    kwargs = dict(steps=90, warmup=20, seed=7, until=until, progress=False)
    whole = MALA(ENERGY, eps=0.3).run(z0(), **kwargs)
    path = tmp_path / "state.pt"
    import latentmcmc.samplers.base as base

    real_save, written = base.save_state, {"n": 0}

    def save_then_die(p, payload):
        real_save(p, payload)
        written["n"] += 1
        if written["n"] == 5:  # after 50 steps: 30 recorded, three checks made
            raise Killed

    monkeypatch.setattr(base, "save_state", save_then_die)
    with pytest.raises(Killed):
        MALA(ENERGY, eps=0.3).run(z0(), **kwargs, checkpoint=path, checkpoint_every=10)
    monkeypatch.setattr(base, "save_state", real_save)
    resumed = MALA(ENERGY, eps=0.3).run(z0(), **kwargs, checkpoint=path, checkpoint_every=10, resume=True)
    assert torch.equal(whole.draws, resumed.draws)
    a, b = (torch.tensor(r.extra["online_history"], dtype=torch.float64) for r in (whole, resumed))
    assert a.shape == b.shape and a.shape[0] >= 7
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
