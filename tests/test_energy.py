"""LatentEnergy: a linear generator and a quadratic critic give a Gaussian latent target."""

import pytest
import torch
from helpers.mc import assert_gaussian_moments, exact_draws
from torch import nn

from latentmcmc import MALA, LatentEnergy


class QuadraticCritic(nn.Module):
    """U(x) = 0.5 (x - m)^T L (x - m)."""

    def __init__(self, m, L):
        super().__init__()
        self.m = nn.Parameter(m)
        self.L = nn.Parameter(L)

    def forward(self, x):
        d = x - self.m
        return 0.5 * torch.einsum("ci,ij,cj->c", d, self.L, d).unsqueeze(1)  # (chains, 1), like a discriminator


def make_models(d=4, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    gen = nn.Linear(d, D).double()
    with torch.no_grad():
        gen.weight.copy_(torch.randn(D, d, generator=g, dtype=torch.float64) / 2)
        gen.bias.copy_(torch.randn(D, generator=g, dtype=torch.float64))
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    L = a @ a.T / D + 0.5 * torch.eye(D, dtype=torch.float64)
    m = torch.randn(D, generator=g, dtype=torch.float64)
    return gen, QuadraticCritic(m, L)


def latent_gaussian(gen, critic, beta, prior):
    W, b = gen.weight.detach(), gen.bias.detach()
    L, m = critic.L.detach(), critic.m.detach()
    prec = beta * W.T @ L @ W
    if prior:
        prec = prec + torch.eye(W.shape[1], dtype=W.dtype)
    cov = torch.linalg.inv(prec)
    mean = cov @ (beta * W.T @ L @ (m - b))
    return mean, cov


@pytest.mark.parametrize("prior,beta", [(True, 1.0), (True, 3.0), (False, 1.0)])
@pytest.mark.slow
def test_latent_target_matches_the_gaussian(prior, beta):
    gen, critic = make_models()
    if prior:
        energy = LatentEnergy(gen, critic, beta=beta, prior=True)
    else:
        with pytest.warns(UserWarning, match="improper"):
            energy = LatentEnergy(gen, critic, beta=beta, prior=False)
    mean, cov = latent_gaussian(gen, critic, beta, prior)
    z0 = exact_draws(mean, cov, 400, seed=1)
    # the formula is right: energy differences equal the Gaussian's
    e = energy(z0)
    prec = torch.linalg.inv(cov)
    quad = 0.5 * torch.einsum("ci,ij,cj->c", z0 - mean, prec, z0 - mean)
    torch.testing.assert_close(e - e[0], quad - quad[0])
    chains = MALA(energy, eps=0.1).run(z0, steps=1000, warmup=200, thin=5, seed=2)
    assert_gaussian_moments(chains.draws, mean, cov)


def test_models_are_put_in_eval_mode_and_frozen():
    gen = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    gen.train()
    energy = LatentEnergy(gen, critic)
    assert not gen.training and not critic.training
    assert not any(p.requires_grad for p in list(gen.parameters()) + list(critic.parameters()))
    chains = MALA(energy, eps=0.05).run(torch.randn(16, 3), steps=5, seed=0)
    assert torch.isfinite(chains.draws).all()
    assert all(p.grad is None for p in gen.parameters())


class BatchCentering(nn.Module):
    """A critic that mixes the batch: its output for one sample depends on the others."""

    def forward(self, x):
        return (x - x.mean(0, keepdim=True)).square().sum(1)


def test_refuses_a_model_that_couples_chains():
    energy = LatentEnergy(nn.Linear(2, 2), BatchCentering())
    with pytest.raises(ValueError, match="couples chains"):
        MALA(energy, eps=0.1).init(torch.randn(8, 2))


def test_refuses_batchnorm_in_training_mode_in_a_plain_callable():
    bn = nn.BatchNorm1d(2).train()
    with pytest.raises(ValueError, match="couples chains"):
        MALA(lambda z: bn(z).square().sum(1), eps=0.1).init(torch.randn(8, 2))


def test_value_and_grad_matches_autograd_of_the_formula():
    gen, critic = make_models()
    energy = LatentEnergy(gen, critic, beta=2.0)
    z = torch.randn(5, 4, dtype=torch.float64)
    e, g = energy.value_and_grad(z)
    zz = z.clone().requires_grad_(True)
    ref = 2.0 * critic(gen(zz)).squeeze(1) + 0.5 * zz.square().sum(1)
    (gref,) = torch.autograd.grad(ref.sum(), zz)
    torch.testing.assert_close(e, ref.detach())
    torch.testing.assert_close(g, gref)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"beta": -1.0}, "beta"), ({"beta": float("nan")}, "beta"), ({"beta": float("inf")}, "beta")],
)
def test_bad_beta(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentEnergy(nn.Linear(2, 2), nn.Linear(2, 1), **kwargs)


def test_latent_shape_and_critic_output_are_checked():
    energy = LatentEnergy(nn.Linear(3, 2), nn.Linear(2, 1), latent_shape=(3,))
    with pytest.raises(ValueError, match="expects"):
        energy(torch.randn(4, 2))
    bad = LatentEnergy(nn.Linear(3, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="critic returned shape"):
        MALA(bad, eps=0.1).init(torch.randn(4, 3))


def test_a_dcgan_discriminator_of_shape_n_1_1_1_is_one_number_per_sample():
    """The DCGAN discriminator of PyTorch's tutorial ends in a 4x4 convolution: (n, 1, 1, 1), once refused."""
    flat = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    dcgan_like = nn.Sequential(flat, nn.Unflatten(1, (1, 1, 1)))
    g = nn.Linear(3, 4)
    z = torch.randn(5, 3)
    torch.testing.assert_close(LatentEnergy(g, dcgan_like)(z), LatentEnergy(g, flat)(z))
    patches = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (1, 2, 2)))  # a patch critic: four numbers a sample
    with pytest.raises(ValueError, match="critic returned shape"):
        LatentEnergy(g, patches)(z)


def test_critic_sign_reads_a_realness_logit_as_an_energy():
    import torch
    from torch import nn

    from latentmcmc import LatentEnergy

    logit = nn.Linear(2, 1)
    z = torch.randn(5, 2)
    as_energy = LatentEnergy(nn.Identity(), logit, beta=2.0, prior=True)
    as_logit = LatentEnergy(nn.Identity(), logit, beta=2.0, prior=True, critic_sign=-1)
    prior = 0.5 * z.square().sum(1)
    u = logit(z).reshape(5).detach()
    torch.testing.assert_close(as_energy(z).detach(), 2.0 * u + prior)
    torch.testing.assert_close(as_logit(z).detach(), -2.0 * u + prior)
    import pytest

    with pytest.raises(ValueError, match="critic_sign"):
        LatentEnergy(nn.Identity(), logit, critic_sign=0.5)


def test_programs_loaded_the_torch_way_are_accepted(tmp_path):
    """``torch.export.load(path).module()`` refuses ``.eval()`` (NotImplementedError), which LatentEnergy called."""
    g, d = nn.Linear(3, 4).eval(), nn.Sequential(nn.Linear(4, 1), nn.Sigmoid()).eval()
    batch = torch.export.Dim("batch")
    for name, model, dim in (("g", g, 3), ("d", d, 4)):
        torch.export.save(torch.export.export(model, (torch.randn(2, dim),), dynamic_shapes=({0: batch},)),
                          tmp_path / f"{name}.pt2")
    loaded = [torch.export.load(tmp_path / f"{name}.pt2").module() for name in ("g", "d")]
    z = torch.randn(5, 3)
    torch.testing.assert_close(LatentEnergy(*loaded, critic_output="probability")(z),
                               LatentEnergy(g, d, critic_output="probability")(z))
