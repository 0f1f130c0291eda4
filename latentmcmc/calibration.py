"""Calibrating a critic into a discriminator's logit (Platt scaling), as MH-GAN and DRS need.

MH-GAN (Turner et al. 2019) and discriminator rejection sampling (Azadi et al. 2019) read a
discriminator's logit ``l(x)`` as the log density ratio ``log p_data(x) / p_G(x)``, which holds only for
a calibrated one.  Here the critic's realness ``r(x) = -s U(x)`` (``s = critic_sign``) is calibrated by
a one-feature logistic regression ``l(x) = a r(x) + b`` fitted on held-out real data against fresh
generator samples (Platt 1999, as in the MH-GAN paper).  Without real data (a model trained
elsewhere and no reference set), the uncalibrated ``l(x) = beta r(x)`` is used and said so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .priors import STANDARD_NORMAL

__all__ = ["Calibration", "PlattScaled", "calibrate", "platt_fit"]


@dataclass
class Calibration:
    """``l(x) = slope * r(x) + intercept`` with ``r = -U(x)``; ``fitted`` False when uncalibrated."""

    slope: float
    intercept: float
    fitted: bool

    def logit(self, energy_critic: nn.Module, x: Tensor) -> Tensor:
        """``l(x)`` from ``U`` (the critic read as an energy), differentiable in ``x`` (wrap in no_grad otherwise)."""
        realness = -energy_critic(x).reshape(x.shape[0])
        return self.slope * realness + self.intercept


def platt_fit(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """``(a, b)`` of the logistic regression ``P(real) = sigmoid(a s + b)`` of 0/1 ``labels`` on ``scores``, unregularised."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6).fit(scores.double().cpu().numpy().reshape(-1, 1), labels.cpu().numpy().astype(int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


class PlattScaled(nn.Module):
    """``a l(x) + b``: a critic's logit ``l`` after Platt scaling (``a``, ``b`` are buffers, saved and exported)."""

    def __init__(self, critic: nn.Module, slope: float, intercept: float) -> None:
        super().__init__()
        self.critic = critic
        self.register_buffer("slope", torch.tensor(float(slope)))
        self.register_buffer("intercept", torch.tensor(float(intercept)))

    def forward(self, x: Tensor) -> Tensor:
        return self.slope * self.critic(x) + self.intercept


@torch.no_grad()
def calibrate(generator: nn.Module, energy_critic: nn.Module, latent_shape: tuple[int, ...], real: Tensor | None,
              beta: float = 1.0, n: int = 5000, seed: int = 0, prior=None) -> Calibration:
    """Platt scaling of ``r = -U`` on up to ``n`` real samples against ``n`` generated ones; ``beta r`` without data.

    The generated ones are ``G(z)`` for ``z`` drawn from ``prior`` (a :class:`~latentmcmc.priors.LatentPrior`;
    None: N(0, I)).
    """
    if real is None or real.shape[0] < 10:
        return Calibration(beta, 0.0, False)
    g = torch.Generator().manual_seed(seed)
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    m = min(n, real.shape[0])
    idx = torch.randperm(real.shape[0], generator=g)[:m]
    prior = prior or STANDARD_NORMAL
    fake = torch.cat([generator(prior.to_latent(prior.sample(1000, tuple(latent_shape), g)).to(device))
                      for _ in range(-(-m // 1000))])[:m]
    real = real.reshape(real.shape[0], *fake.shape[1:])  # data viewed in another shape: the critic reads G's
    realness = torch.cat([-energy_critic(real[idx].to(device)).reshape(-1),
                          -energy_critic(fake).reshape(-1)])
    slope, intercept = platt_fit(realness, torch.cat([torch.ones(m), torch.zeros(m)]))  # two parameters
    return Calibration(slope, intercept, True)
