"""The entropy term of the generator: one strategy object per choice, in one table.

The energy-GAN generator should maximise the entropy of its samples; Kumar et al. (2019) replace it
by the mutual information ``I(X; Z)`` between a sample and its latent, estimated with an auxiliary
network.  Each term here says which auxiliary network it trains (built by :meth:`EntropyTerm.build`,
stored in checkpoints under :attr:`EntropyTerm.aux_name`) and what it adds to the generator's loss
(:meth:`EntropyTerm.loss`).  Adding a term is a class and one line in :data:`ENTROPY_TERMS`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import ConvEncoder, ConvStatisticsNetwork, Encoder, StatisticsNetwork

__all__ = ["EntropyTerm", "DeepInfoMax", "EncoderBound", "NoEntropy", "ENTROPY_TERMS", "entropy_term",
           "dim_mi_loss", "encoder_loss"]


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


class EntropyTerm:
    """What one choice of entropy term trains and adds to the generator's loss (base: the plain objective)."""

    name = "none"
    summary = ("no entropy term: the plain energy-GAN objective (it collapsed to 3-9 of 25 Gaussian modes when "
               "the critic got 1 step per generator step; README)")
    aux_name: str | None = None  # key of the auxiliary network in checkpoints and optimisers

    def build(self, data_shape: tuple[int, ...], latent_dim: int, width: int, depth: int,
              arch: str = "mlp") -> nn.Module | None:
        """The auxiliary network this term trains (of the generator's architecture ``arch``), or None."""
        return None

    def loss(self, aux: nn.Module | None, x_fake: Tensor, z: Tensor, perm: Tensor | None,
             weight: float = 1.0) -> tuple[Tensor | None, dict[str, float]]:
        """The term added to ``E_z[U(G(z))]`` (None: nothing) and its statistics for the history."""
        return None, {}


class NoEntropy(EntropyTerm):
    pass


class DeepInfoMax(EntropyTerm):
    """``-I(X; Z)`` by a Deep-InfoMax (JSD) statistics network ``T(x, z)`` (:func:`dim_mi_loss`)."""

    name = "dim"
    summary = "Deep-InfoMax MI estimate with a statistics network T(x, z) (Kumar et al. 2019)"
    aux_name = "mi"

    def build(self, data_shape, latent_dim, width, depth, arch="mlp"):
        if arch == "conv":
            return ConvStatisticsNetwork(data_shape, latent_dim, width)
        return StatisticsNetwork(data_shape, latent_dim, width, depth)

    def loss(self, aux, x_fake, z, perm, weight=1.0):
        mi = dim_mi_loss(aux, x_fake, z, perm)
        return mi, {"mi_bce": float(mi.detach())}


class EncoderBound(EntropyTerm):
    """``lambda2 |z - Enc(G(z))|^2``, a reconstruction bound on ``I(X; Z)`` with an encoder (:func:`encoder_loss`)."""

    name = "encoder"
    summary = "reconstruction bound lambda2 |z - Enc(G(z))|^2 with an encoder"
    aux_name = "encoder"

    def build(self, data_shape, latent_dim, width, depth, arch="mlp"):
        if arch == "conv":
            return ConvEncoder(data_shape, latent_dim, width)
        return Encoder(data_shape, latent_dim, width, depth)

    def loss(self, aux, x_fake, z, perm, weight=1.0):
        rec = encoder_loss(aux, x_fake, z)
        return weight * rec, {"encoder": float(rec.detach())}


ENTROPY_TERMS: dict[str, EntropyTerm] = {term.name: term for term in (DeepInfoMax(), EncoderBound(), NoEntropy())}


def entropy_term(name: str | EntropyTerm) -> EntropyTerm:
    """The term of :data:`ENTROPY_TERMS` called ``name`` (a term passes through)."""
    if isinstance(name, EntropyTerm):
        return name
    if name not in ENTROPY_TERMS:
        raise ValueError(f"unknown entropy term {name!r}; choose one of {', '.join(ENTROPY_TERMS)}")
    return ENTROPY_TERMS[name]
