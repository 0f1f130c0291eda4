"""The energy-GAN objective of "Maximum Entropy Generators for Energy-Based Models" (Kumar et al. 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .entropy import EntropyTerm, dim_mi_loss, encoder_loss, entropy_term

__all__ = ["critic_loss", "gradient_penalty", "generator_loss", "dim_mi_loss", "encoder_loss"]


def gradient_penalty(critic: nn.Module, x_real: Tensor) -> Tensor:
    r"""Zero-centred gradient penalty on real data: ``mean_i |grad_x U(x_i)|^2`` (differentiable)."""
    x = x_real.detach().requires_grad_(True)
    return _penalty(critic(x), x)


def _penalty(u_real: Tensor, x: Tensor) -> Tensor:
    """``mean_i |grad_x u_i|^2`` for energies ``u_real`` computed from ``x`` (keeps the graph)."""
    (grad,) = torch.autograd.grad(u_real.sum(), x, create_graph=True)
    return grad.reshape(x.shape[0], -1).square().sum(1).mean()


def critic_loss(critic: nn.Module, x_real: Tensor, x_fake: Tensor, gp_weight: float) -> tuple[Tensor, dict[str, float]]:
    r"""``E_data[U(x)] - E_z[U(G(z))] + lambda E_data[|grad_x U(x)|^2]``: lower energy on data than on fakes.

    Real and fake batches go through the critic in one forward pass (one pass is also what
    DistributedDataParallel expects per backward); the penalty differentiates the real half.
    """
    x = x_real.detach().requires_grad_(True)
    u = critic(torch.cat([x, x_fake.detach()])).reshape(-1)
    n = x.shape[0]
    u_real, u_fake = u[:n].mean(), u[n:].mean()
    penalty = _penalty(u[:n], x)
    loss = u_real - u_fake + gp_weight * penalty
    return loss, {"u_real": float(u_real.detach()), "u_fake": float(u_fake.detach()), "penalty": float(penalty.detach())}


def generator_loss(
    critic: nn.Module, x_fake: Tensor, z: Tensor, entropy: "str | EntropyTerm", aux: nn.Module | None,
    perm: Tensor | None, encoder_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    r"""``E_z[U(G(z))] - I(X; Z)``, the entropy of G replaced by a mutual-information term.

    ``entropy`` names a term of :data:`~latentmcmc.training.entropy.ENTROPY_TERMS`: ``"dim"`` adds the
    BCE of the statistics network ``aux`` (:func:`dim_mi_loss`), ``"encoder"`` ``lambda2 |z - Enc(G(z))|^2``
    (``lambda2 = encoder_weight``), ``"none"`` nothing (the plain objective, which collapsed with a
    weakly trained critic).
    """
    u_fake = critic(x_fake).mean()
    stats = {"u_gen": float(u_fake.detach())}
    term, term_stats = entropy_term(entropy).loss(aux, x_fake, z, perm, encoder_weight)
    stats.update(term_stats)
    return (u_fake if term is None else u_fake + term), stats
