"""What a critic's output means, and the energy ``U(x)`` (lower = more real) read from it.

:data:`CRITIC_OUTPUTS` is the table of kinds (the CLI's ``--critic-output`` and
``LatentEnergy(critic_output=...)`` read it):

* ``energy``: the output is ``U(x)`` itself (WGAN and energy-GAN critics, trained to score data low);
* ``logit``: a discriminator logit, higher for real data: ``U = -logit`` (as in DDLS);
* ``probability``: ``p = D(x)`` in (0, 1), the probability of "real" (a discriminator ending in a
  Sigmoid, as most published ones do): ``U = -(log p - log(1 - p))``, the logit again.  When the
  critic ends in ``nn.Sigmoid`` (the last layer of an ``nn.Sequential``, a traceable module, or a
  ``torch.export`` program whose output is ``sigmoid(...)``) the Sigmoid is removed and the logit is
  used exactly; otherwise ``p`` is clipped to ``[1e-38, 1 - 2^-24]`` so that a probability saturated at
  1.0 in float32 gives a large finite energy instead of ``-inf``, with a warning (the clipped chains
  see no gradient from the critic there).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["CRITIC_OUTPUTS", "CriticOutput", "energy_critic", "strip_final_sigmoid", "probe_critic_output", "one_per_sample"]


def one_per_sample(shape, n: int) -> bool:
    """Whether a critic's output of ``shape`` for ``n`` samples is one number each: ``(n,)``, ``(n, 1)``, or
    ``(n, 1, 1, 1)`` as a DCGAN discriminator's last convolution leaves it (any trailing ones)."""
    shape = tuple(shape)
    return len(shape) >= 1 and shape[0] == n and all(d == 1 for d in shape[1:])


@dataclass(frozen=True)
class CriticOutput:
    """One kind of critic output: how to read an energy from it, and a one-line summary."""

    name: str
    summary: str


CRITIC_OUTPUTS: dict[str, CriticOutput] = {
    "energy": CriticOutput("energy", "the output is an energy, lower = more real (WGAN, energy-GAN critics)"),
    "logit": CriticOutput("logit", "a discriminator logit, higher = more real: U = -logit (DDLS)"),
    "probability": CriticOutput("probability", "a probability of real in (0, 1), e.g. after a final Sigmoid: "
                                               "U = -logit(p) (a final Sigmoid is removed exactly where it can be found)"),
}


class Negated(nn.Module):
    """``-critic(x)``: a realness logit read as an energy."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x: Tensor, *condition: Tensor) -> Tensor:
        return -self.critic(x, *condition)


class ProbabilityEnergy(nn.Module):
    """``-(log p - log(1 - p))`` of a probability output, ``p`` clipped away from 0 and 1 (warns once on clipping)."""

    HIGH = 1.0 - 2.0**-24  # the largest float32 below 1
    LOW = 1e-38

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic
        self.warned = False

    def forward(self, x: Tensor, *condition: Tensor) -> Tensor:
        p = self.critic(x, *condition)
        clipped = p.clamp(self.LOW, self.HIGH)
        if not self.warned and not torch.compiler.is_compiling():
            saturated = int(((p >= self.HIGH) | (p <= self.LOW)).sum())
            if saturated:
                self.warned = True
                warnings.warn(
                    f"the critic's probability saturates (at 0 or 1 in floating point) for {saturated} of {p.numel()} "
                    f"samples: their energy is clipped to [{-math.log(self.HIGH / (1 - self.HIGH)):.1f}, "
                    f"{-math.log(self.LOW / (1 - self.LOW)):.1f}] and the critic gives them no gradient. Pass the discriminator's logit (remove its final Sigmoid) for "
                    "an exact energy", RuntimeWarning, stacklevel=2)
        return -(torch.log(clipped) - torch.log1p(-clipped))


_SHAPE_OPS = ("squeeze", "unsqueeze", "view", "reshape", "flatten", "contiguous", "_unsafe_view", "clone")


def _is_sigmoid(gm, node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), nn.Sigmoid)
    return node.op in ("call_function", "call_method") and (
        node.target in (torch.sigmoid, torch.ops.aten.sigmoid.default) or node.target == "sigmoid")


def _is_shape_op(node) -> bool:
    if node.op not in ("call_function", "call_method"):
        return False
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    return any(str(name).split(".")[0 if node.op == "call_method" else -1].startswith(op) or
               f"aten.{op}" in str(node.target) for op in _SHAPE_OPS)


def _strip_graph(gm: torch.fx.GraphModule) -> torch.fx.GraphModule | None:
    """The graph module with its final sigmoid removed (shape-only ops after it kept), or None when it has none."""
    import copy

    with warnings.catch_warnings():  # torch's own deprecation notice from copying exported graphs
        warnings.simplefilter("ignore", FutureWarning)
        gm = copy.deepcopy(gm)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    result = output.args[0]
    node = result[0] if isinstance(result, (tuple, list)) and len(result) == 1 else result
    while isinstance(node, torch.fx.Node) and _is_shape_op(node) and not _is_sigmoid(gm, node):
        node = node.args[0]
    if not isinstance(node, torch.fx.Node) or not _is_sigmoid(gm, node) or len(node.users) != 1:
        return None
    node.replace_all_uses_with(node.args[0])
    gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def strip_final_sigmoid(critic: nn.Module) -> nn.Module | None:
    """``critic`` without its final Sigmoid (its logit), or None when no final Sigmoid can be found.

    Handles an ``nn.Sequential`` ending in ``nn.Sigmoid``, a ``torch.export`` program (latentmcmc's
    :class:`~latentmcmc.io.torch_export.ExportedModule` or a ``GraphModule``) and any module that
    ``torch.fx`` can trace.
    """
    if isinstance(critic, nn.Sequential) and len(critic) and isinstance(critic[-1], nn.Sigmoid):
        return critic[:-1]
    if hasattr(critic, "program") and hasattr(critic, "with_program"):  # an ExportedModule (not imported: no cycle)
        inner = strip_final_sigmoid(critic.program)
        return None if inner is None else critic.with_program(inner)
    if isinstance(critic, torch.fx.GraphModule):
        return _strip_graph(critic)
    try:
        traced = torch.fx.symbolic_trace(critic)
    except Exception:  # noqa: BLE001 - untraceable modules fall back to the clipped probability
        return None
    return _strip_graph(traced)


def energy_critic(critic: nn.Module, kind: str) -> tuple[nn.Module, str]:
    """``(module computing U(x), how)`` for a critic whose output is of ``kind`` (:data:`CRITIC_OUTPUTS`)."""
    if kind not in CRITIC_OUTPUTS:
        raise ValueError(f"unknown critic output {kind!r}; choose one of {', '.join(CRITIC_OUTPUTS)}")
    if kind == "energy":
        return critic, "U = critic(x)"
    if kind == "logit":
        return Negated(critic), "U = -critic(x) (a logit)"
    stripped = strip_final_sigmoid(critic)
    if stripped is not None:
        return Negated(stripped), "U = -logit, the critic's final Sigmoid removed (exact)"
    return ProbabilityEnergy(critic), "U = -(log p - log(1 - p)), p clipped to (1e-38, 1 - 2^-24)"


@torch.no_grad()
def probe_critic_output(generator: nn.Module, critic: nn.Module, latent_shape: tuple[int, ...], kind: str,
                        device: str | torch.device = "cpu", n: int = 64) -> str | None:
    """A warning message when the critic's outputs on ``n`` generated samples look like probabilities but
    ``kind`` is not ``probability``; else None."""
    if kind == "probability":
        return None
    if strip_final_sigmoid(critic) is not None:
        return (f"the critic ends in a Sigmoid (it outputs P(real)) but its output is read as "
                f"{'an energy' if kind == 'energy' else 'a logit'}: pass --critic-output probability "
                "(LatentEnergy(..., critic_output='probability')), which uses the logit before the Sigmoid")
    z = torch.randn(n, *latent_shape, generator=torch.Generator().manual_seed(0)).to(device)
    out = critic(generator(z))
    if bool(((out > 0) & (out < 1)).all()):
        return ("the critic's outputs all lie in (0, 1), like the probabilities of a discriminator ending in a "
                f"Sigmoid, but they are read as {'an energy' if kind == 'energy' else 'a logit'}: the energy is then "
                "bounded and nearly flat. If it outputs P(real), pass --critic-output probability "
                "(LatentEnergy(..., critic_output='probability'))")
    return None
