"""Reproducibility, chain independence, cached state, recording modes, divergences, argument errors."""

import pytest
import torch

from latentmcmc import MALA, AnnealedMALA, Langevin

ENERGY = lambda z: 0.5 * z.square().sum(1) + 0.1 * z[:, 0] ** 4  # noqa: E731


def z0(n=16, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:.*froze:RuntimeWarning")  # ULA on a quartic tail; irrelevant here
@pytest.mark.parametrize("cls", [MALA, Langevin])
def test_same_seed_same_draws(cls):
    a = cls(ENERGY, eps=0.2).run(z0(), steps=50, warmup=20, seed=7)
    b = cls(ENERGY, eps=0.2).run(z0(), steps=50, warmup=20, seed=7)
    c = cls(ENERGY, eps=0.2).run(z0(), steps=50, warmup=20, seed=8)
    assert torch.equal(a.draws, b.draws) and torch.equal(a.eps, b.eps)
    assert not torch.equal(a.draws, c.draws)
    assert a.seed == 7


PER_CHAIN_EPS = torch.full((16,), 0.2, dtype=torch.float64)


@pytest.mark.parametrize("eps,adapt", [(0.2, False), (PER_CHAIN_EPS, False), (PER_CHAIN_EPS, True)])
def test_chains_are_independent(eps, adapt):
    """Changing one chain's start changes no other chain (a shared, adapted eps is the exception below)."""
    start = z0()
    moved = start.clone()
    moved[0] += 1.0
    a = MALA(ENERGY, eps=eps).run(start, steps=30, warmup=20 if adapt else 0, adapt=adapt, seed=1)
    b = MALA(ENERGY, eps=eps).run(moved, steps=30, warmup=20 if adapt else 0, adapt=adapt, seed=1)
    assert torch.equal(a.draws[1:], b.draws[1:])
    assert not torch.equal(a.draws[0], b.draws[0])


def test_shared_adapted_eps_couples_chains_through_warmup_only():
    """A shared eps adapts on the mean acceptance, so one chain's start moves the others' draws."""
    start = z0()
    moved = start.clone()
    moved[0] += 1.0
    a = MALA(ENERGY, eps=0.2).run(start, steps=30, warmup=20, seed=1)
    b = MALA(ENERGY, eps=0.2).run(moved, steps=30, warmup=20, seed=1)
    assert not torch.equal(a.eps, b.eps) and not torch.equal(a.draws[1:], b.draws[1:])


@pytest.mark.parametrize("cls", [MALA, Langevin])
def test_cached_energy_and_grad_equal_recomputation(cls):
    chains = cls(ENERGY, eps=0.2).run(z0(), steps=40, seed=2)
    zz = chains.last.clone().requires_grad_(True)
    e = ENERGY(zz)
    (g,) = torch.autograd.grad(e.sum(), zz)
    torch.testing.assert_close(chains.last_energy, e.detach())
    torch.testing.assert_close(chains.extra["last_grad"], g)
    torch.testing.assert_close(chains.energy, ENERGY(chains.draws.reshape(-1, 3)).reshape(16, 40))


def test_step_api():
    sampler = MALA(ENERGY, eps=0.2)
    state = sampler.init(z0())
    g = torch.Generator().manual_seed(0)
    new, info = sampler.step(state, rng=g)
    assert new.z.shape == state.z.shape and info.accept_prob.shape == (16,)
    assert info.accepted.dtype == torch.bool
    moved = (new.z != state.z).any(1)
    assert torch.equal(moved, info.accepted)


def test_thinning_and_last_only_use_the_same_random_stream():
    full = MALA(ENERGY, eps=0.2).run(z0(), steps=60, warmup=10, seed=3)
    thin = MALA(ENERGY, eps=0.2).run(z0(), steps=60, warmup=10, seed=3, thin=7)
    last = MALA(ENERGY, eps=0.2).run(z0(), steps=60, warmup=10, seed=3, record="last")
    assert thin.draws.shape == (16, 8, 3)
    torch.testing.assert_close(thin.draws, full.draws[:, 6::7][:, :8])
    assert last.draws.shape == (16, 1, 3)
    torch.testing.assert_close(last.draws[:, 0], full.draws[:, -1])
    torch.testing.assert_close(last.acceptance_rate, full.acceptance_rate)
    torch.testing.assert_close(thin.acceptance_rate, full.acceptance_rate)
    torch.testing.assert_close(full.acceptance_rate, full.accept_prob.mean(1))


@pytest.mark.parametrize("thin", [1, 3])
def test_streaming_draws_to_host_keeps_every_draw(thin):
    """Chunks of 7 kept draws (not a divisor of the 20 or 33 kept) through the buffer: nothing lost or moved."""
    kw = dict(steps=100, warmup=60, seed=3, thin=thin, keep_warmup=True, adapt=True)
    direct = MALA(ENERGY, eps=0.2).run(z0(), **kw)
    streamed = MALA(ENERGY, eps=0.2).run(z0(), **kw, stream=7)
    for name in ("draws", "energy", "accept_prob", "diverging", "warmup_draws", "warmup_eps", "warmup_diverging"):
        assert torch.equal(getattr(streamed, name), getattr(direct, name)), name
    assert streamed.draws.device.type == "cpu" and streamed.draws.shape[1] == 100 // thin


@pytest.mark.parametrize("stream", [None, 10])
def test_interrupt_returns_the_draws_so_far(stream):
    calls = {"n": 0}

    def energy(z):
        calls["n"] += 1
        if calls["n"] == 2 + 10 + 25:  # init + coupling check, 10 warm-up steps, then 25 recorded steps
            raise KeyboardInterrupt
        return ENERGY(z)

    with pytest.warns(RuntimeWarning, match="interrupted after 24 of 100"):
        chains = MALA(energy, eps=0.2).run(z0(), steps=100, warmup=10, seed=0, stream=stream)
    assert chains.extra["interrupted"] and chains.draws.shape == (16, 24, 3)
    reference = MALA(ENERGY, eps=0.2).run(z0(), steps=24, warmup=10, seed=0)
    assert torch.equal(chains.draws, reference.draws)  # 24 kept draws: the last 4 were still in the buffer of 10
    torch.testing.assert_close(chains.acceptance_rate, chains.accept_prob.mean(1))  # over 24 steps, not 100


def test_interrupt_during_warmup_propagates():
    calls = {"n": 0}

    def energy(z):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return ENERGY(z)

    with pytest.raises(KeyboardInterrupt):
        MALA(energy, eps=0.2).run(z0(), steps=10, warmup=10, seed=0)


def test_keep_warmup():
    chains = MALA(ENERGY, eps=0.2).run(z0(), steps=10, warmup=30, seed=3, keep_warmup=True, thin=2)
    assert chains.warmup_draws.shape == (16, 15, 3)
    assert chains.warmup_eps.shape == (16, 15)
    assert chains.draws.shape == (16, 5, 3)


def nan_beyond(z):
    """Finite for z_0 < 1.5, NaN beyond: a model that breaks outside its training range."""
    e = 0.5 * z.square().sum(1)
    return torch.where(z[:, 0] < 1.5, e, torch.full_like(e, float("nan")))


def test_mala_rejects_and_counts_non_finite_proposals():
    start = z0(200, 2, seed=4).clamp(max=1.0)
    with pytest.warns(RuntimeWarning, match="divergent"):
        chains = MALA(nan_beyond, eps=0.5).run(start, steps=200, seed=5)
    assert torch.isfinite(chains.draws).all()
    assert float(chains.draws[..., 0].max()) < 1.5
    assert int(chains.divergences.sum()) == int(chains.diverging.sum()) > 0
    assert not chains.frozen.any()


def test_langevin_freezes_and_flags_chains():
    start = z0(200, 2, seed=4).clamp(max=1.0)
    with pytest.warns(RuntimeWarning, match="froze"):
        chains = Langevin(nan_beyond, eps=0.5).run(start, steps=200, seed=5)
    assert torch.isfinite(chains.draws).all()
    frozen = chains.frozen
    assert frozen.any() and not frozen.all()
    assert torch.equal(chains.divergences > 0, frozen)
    # a frozen chain repeats its last finite state
    assert torch.equal(chains.draws[frozen, -1], chains.draws[frozen, -2])
    assert torch.equal(chains.last[frozen], chains.draws[frozen, -1])


@pytest.mark.filterwarnings("ignore:.*froze:RuntimeWarning")  # freezing after warm-up is allowed here
def test_langevin_warmup_rejects_instead_of_freezing():
    """Adaptation starts at 10 * eps; a blown-up trial step during warm-up must not end chains."""
    chains = Langevin(ENERGY, eps=0.2).run(z0(64), steps=1, warmup=100, seed=7, keep_warmup=True)
    assert int(chains.warmup_divergences.sum()) > 0  # the trial steps did blow up ...
    assert float(chains.warmup_draws.abs().max()) < 20.0  # ... were rejected, not taken ...
    assert torch.equal(chains.frozen, chains.divergences > 0)  # ... and no chain froze during warm-up


def test_non_finite_energy_at_start_is_an_error():
    start = z0(4, 2).clamp(max=1.0)
    start[2, 0] = 2.0
    with pytest.raises(ValueError, match=r"not finite at z0 for chains \[2\]"):
        MALA(nan_beyond, eps=0.1).init(start)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MALA(ENERGY, eps=0.0), "eps"),
        (lambda: MALA(ENERGY, eps=-1.0), "eps"),
        (lambda: MALA(ENERGY, eps=float("nan")), "eps"),
        (lambda: MALA(ENERGY, eps=torch.ones(2, 2)), "eps"),
        (lambda: MALA(ENERGY, eps="big"), "eps"),
        (lambda: MALA(ENERGY, eps=torch.ones(5)).run(z0(), steps=2), "eps has shape"),
        (lambda: MALA(ENERGY, eps=0.1).run(torch.randn(5), steps=2), "z0"),
        (lambda: MALA(ENERGY, eps=0.1).run([[0.0]], steps=2), "z0"),
        (lambda: MALA(ENERGY, eps=0.1).run(torch.zeros(3, 2, dtype=torch.long), steps=2), "z0"),
        (lambda: MALA(ENERGY, eps=0.1).run(torch.full((3, 2), float("nan")), steps=2), "z0"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=0), "steps"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2.5), "steps"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, warmup=-1), "warmup"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, thin=0), "thin"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, thin=3), "thin"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, target_accept=1.5), "target_accept"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, record="some"), "record"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, adapt=True), "warmup"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, seed=-3), "seed"),
        (lambda: MALA(ENERGY, eps=0.1).run(z0(), steps=2, stream=0), "stream"),
        (lambda: MALA(lambda z: z.sum(1, keepdim=True), eps=0.1).run(z0(), steps=2), "energy returned shape"),
        (lambda: MALA(lambda z: z.detach().sum(1), eps=0.1).run(z0(), steps=2), "not differentiable"),
        (lambda: MALA(42, eps=0.1), "callable"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_annealed_uses_the_same_machinery():
    chains = AnnealedMALA(ENERGY, eps=0.2, schedule="sigmoid").run(z0(), steps=5, warmup=20, seed=0)
    assert chains.log_weights.shape == (16,)
    assert chains.draws.shape == (16, 5, 3)
