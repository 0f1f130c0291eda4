"""Critic outputs: a probability critic equals the logit one (its Sigmoid removed exactly where it can be),
saturated probabilities do not turn into inf silently, and a probability critic read as an energy warns."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from latentmcmc import MALA, LatentEnergy
from latentmcmc.critics import (
    CRITIC_OUTPUTS,
    ProbabilityEnergy,
    probe_critic_output,
    strip_final_sigmoid,
)

torch.manual_seed(0)
BODY = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


class SigmoidAtTheEnd(nn.Module):
    """A discriminator written the usual way: torch.sigmoid in forward, then a reshape."""

    def __init__(self):
        super().__init__()
        self.body = BODY

    def forward(self, x):
        return torch.sigmoid(self.body(x)).squeeze(1)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so the clipped probability is used."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        if float(x.abs().max()) > 1e9:
            return x[:, 0]
        return torch.sigmoid(self.scale * BODY(x)).squeeze(1)


def exported(module: nn.Module, path) -> nn.Module:
    from latentmcmc.io.torch_export import load_exported

    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module, (torch.randn(4, 2),), dynamic_shapes=({0: batch},)), path)
    return load_exported(path)


@pytest.mark.parametrize("make", [lambda tmp: nn.Sequential(*BODY, nn.Sigmoid()), lambda tmp: SigmoidAtTheEnd(),
                                  lambda tmp: exported(nn.Sequential(*BODY, nn.Sigmoid()), tmp / "d.pt2"),
                                  lambda tmp: exported(SigmoidAtTheEnd(), tmp / "e.pt2"), lambda tmp: Untraceable()])
def test_probability_equals_the_logit_of_the_same_discriminator(make, tmp_path):
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    logit = LatentEnergy(nn.Identity(), BODY, beta=2.0, critic_output="logit")
    prob = LatentEnergy(nn.Identity(), make(tmp_path), beta=2.0, critic_output="probability")
    torch.testing.assert_close(prob(z), logit(z), rtol=1e-5, atol=1e-5)
    exact = not isinstance(prob.critic, Untraceable)
    assert ("removed (exact)" in prob.critic_reading) == exact
    torch.testing.assert_close(prob.value_and_grad(z)[1], logit.value_and_grad(z)[1], rtol=1e-4, atol=1e-5)


def test_a_saturated_probability_is_clipped_with_a_warning_not_turned_into_inf():
    z = 3.0 * torch.randn(500, 2, generator=torch.Generator().manual_seed(2))
    critic = Untraceable(scale=200.0)  # float32 sigmoid saturates at exactly 1.0 (and 0) for most samples
    p = critic(z)
    assert bool((p == 1.0).any())
    naive = -(torch.log(p) - torch.log1p(-p))
    assert not bool(torch.isfinite(naive).all())  # what the formula alone would give: -inf energies
    energy = LatentEnergy(nn.Identity(), critic, critic_output="probability")
    with pytest.warns(RuntimeWarning, match="saturates .* for [0-9]+ of 500 samples"):
        e = energy(z)
    assert bool(torch.isfinite(e).all())
    u = e - 0.5 * z.square().sum(1)
    lowest = -math.log(ProbabilityEnergy.HIGH / (1 - ProbabilityEnergy.HIGH))  # p clipped below 1: -16.6
    highest = -math.log(ProbabilityEnergy.LOW)  # p clipped above 0 (float32 reaches 1e-38 exactly): 87.5
    assert lowest - 1e-3 <= float(u.min()) and float(u.max()) <= highest + 1e-3
    assert float(u.min()) < lowest + 1e-3  # the saturated samples sit at the clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chains = MALA(energy, eps=0.01).run(z, steps=10, seed=0)
    assert bool(torch.isfinite(chains.draws).all())


def test_a_probability_critic_read_as_an_energy_is_named():
    probability_critic = nn.Sequential(*BODY, nn.Sigmoid())
    message = probe_critic_output(nn.Identity(), probability_critic, (2,), "energy")
    assert message and "--critic-output probability" in message
    assert probe_critic_output(nn.Identity(), probability_critic, (2,), "probability") is None
    assert probe_critic_output(nn.Identity(), BODY, (2,), "energy") is None  # logits leave (0, 1)


def test_critic_output_table_and_the_0_1_sign():
    assert list(CRITIC_OUTPUTS) == ["energy", "logit", "probability"]
    assert LatentEnergy(nn.Identity(), BODY, critic_sign=-1).critic_output == "logit"
    for other in ("energy", "probability"):  # -1 means logit: any other reading contradicts it
        with pytest.raises(ValueError, match=f"critic_sign -1 .* contradicts critic_output {other}"):
            LatentEnergy(nn.Identity(), BODY, critic_sign=-1, critic_output=other)
    with pytest.raises(ValueError, match="unknown critic_output"):
        LatentEnergy(nn.Identity(), BODY, critic_output="odds")
    assert strip_final_sigmoid(BODY) is None
