"""The networks a training config names (used by the trainer and by checkpoint loading)."""

from __future__ import annotations

from torch import nn

from .entropy import entropy_term
from .networks import ARCHITECTURES, ConvCritic, ConvGenerator, Critic, Generator

__all__ = ["build_networks"]


def build_networks(config: dict) -> dict[str, nn.Module]:
    """``generator``, ``critic`` and the auxiliary network of the config's entropy term (if it has one)."""
    shape = tuple(config["data_shape"])
    latent, width, depth = config["latent_dim"], config["width"], config["depth"]
    arch = config.get("arch") or "mlp"  # checkpoints before the convolutional recipe hold MLPs
    if arch == "conv":
        nets: dict[str, nn.Module] = {"generator": ConvGenerator(latent, shape, width),
                                      "critic": ConvCritic(shape, width, config.get("critic_norm") or "none")}
    elif (config.get("critic_norm") or "none") != "none":
        raise ValueError(f"critic_norm={config['critic_norm']!r} applies to the conv architecture")
    elif arch == "mlp":
        nets = {"generator": Generator(latent, shape, width, depth), "critic": Critic(shape, width, depth)}
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    term = entropy_term(config["entropy"])
    aux = term.build(shape, latent, width, depth, arch)
    if aux is not None:
        nets[term.aux_name] = aux
    return nets
