"""The energy-GAN objective of "Maximum Entropy Generators for Energy-Based Models" (Kumar et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def dim_mi_loss(mi_net: nn.Module, x: Tensor, z: Tensor, perm: Tensor) -> Tensor:
    r"""Deep-InfoMax (Jensen-Shannon) MI term: binary cross-entropy of ``T`` telling joint from product.

    Joint pairs ``(G(z_i), z_i)`` are labelled 1, shuffled pairs ``(G(z_i), z_{perm(i)})`` 0, and the
    loss is the mean BCE over all ``2n`` pairs, ``-(1/2n) sum_i [log s(T(x_i, z_i)) + log(1 - s(T(x_i,
    z_perm(i))))]`` (as in the MEG reference code; ``log 2`` for an uninformed ``T``).  Minimising it
    over ``T`` and ``G`` maximises a lower bound on ``I(X; Z)``.
    """
    joint = mi_net(x, z)
    product = mi_net(x, z[perm])
    logits = torch.cat([joint, product])
    labels = torch.cat([torch.ones_like(joint), torch.zeros_like(product)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def encoder_loss(encoder: nn.Module, x: Tensor, z: Tensor) -> Tensor:
    r"""InfoGAN-style bound: ``mean_i |z_i - Enc(G(z_i))|^2`` (lower = more information kept)."""
    return (z - encoder(x)).square().sum(1).mean()


def generator_loss(
    critic: nn.Module, x_fake: Tensor, z: Tensor, entropy: str, aux: nn.Module | None, perm: Tensor | None,
    encoder_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    r"""``E_z[U(G(z))] - I(X; Z)``, the entropy of G replaced by a mutual-information term.

    ``entropy="dim"``: ``+ BCE`` of the statistics network (:func:`dim_mi_loss`); ``"encoder"``:
    ``+ lambda2 |z - Enc(G(z))|^2``; ``"none"``: the plain objective (prone to mode collapse).
    """
    u_fake = critic(x_fake).mean()
    stats = {"u_gen": float(u_fake.detach())}
    if entropy == "dim":
        mi = dim_mi_loss(aux, x_fake, z, perm)
        stats["mi_bce"] = float(mi.detach())
        return u_fake + mi, stats
    if entropy == "encoder":
        rec = encoder_loss(aux, x_fake, z)
        stats["encoder"] = float(rec.detach())
        return u_fake + encoder_weight * rec, stats
    if entropy == "none":
        return u_fake, stats
    raise ValueError(f"unknown entropy term {entropy!r}; use 'dim', 'encoder' or 'none'")
