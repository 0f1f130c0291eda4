"""Energies that samplers target, and the one call a sampler makes on them.

A target is an energy ``E(z)`` (lower is more probable, density ``exp(-E)``) taking a batch of
chains ``z`` of shape ``(chains, *latent_shape)`` to energies of shape ``(chains,)``.  Samplers need
energy and gradient together; :func:`as_target` turns any accepted form into a :class:`Target`
that computes both in one forward and one backward pass.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .critics import one_per_sample
from .priors import STANDARD_NORMAL, LatentPrior, as_prior, standard_prior_energy

__all__ = ["LatentEnergy", "Target", "as_target", "compile_target", "prior_energy", "EnergyFn", "COMPILE_MODES",
           "check_beta"]

EnergyFn = Callable[[Tensor], Tensor]


def check_beta(beta) -> float:
    """``beta`` as a float if it is finite and >= 0; else a ValueError."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (0.0 <= float(beta) < float("inf")):
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    return float(beta)


prior_energy = standard_prior_energy
"""``0.5 |z|^2`` per chain (all trailing dimensions): the energy of the N(0, I) prior, up to a constant."""


@runtime_checkable
class SupportsValueAndGrad(Protocol):
    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]: ...


def _autograd_value_and_grad(fn: EnergyFn, z: Tensor) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = fn(z)
        if not isinstance(energy, Tensor):
            raise ValueError(f"energy must return a tensor of shape ({z.shape[0]},), got {type(energy).__name__}")
        if energy.shape != z.shape[:1]:
            raise ValueError(
                f"energy returned shape {tuple(energy.shape)}; expected ({z.shape[0]},), one energy per chain"
            )
        if not energy.requires_grad:
            raise ValueError("energy is not differentiable with respect to z (its output does not require grad)")
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad


class Target:
    """An energy ``E(z)`` with ``value_and_grad(z) -> (E(z), grad E(z))`` for a batch of chains.

    ``prior`` is the reference an annealing path starts from and independent proposals default to
    (:class:`~latentmcmc.priors.LatentPrior`; ``N(0, I)`` unless a :class:`LatentEnergy` says otherwise).
    """

    def __init__(self, fn: EnergyFn, value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
                 prior: LatentPrior = STANDARD_NORMAL):
        self.fn = fn
        self._value_and_grad = value_and_grad
        self.prior = prior

    def __call__(self, z: Tensor) -> Tensor:
        return self.fn(z)

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self._value_and_grad is not None:
            energy, grad = self._value_and_grad(z)
            if energy.shape != z.shape[:1] or grad.shape != z.shape:
                raise ValueError(
                    f"energy.value_and_grad returned shapes {tuple(energy.shape)} and {tuple(grad.shape)}; "
                    f"expected ({z.shape[0]},) and {tuple(z.shape)}"
                )
            return energy, grad
        return _autograd_value_and_grad(self.fn, z)

    def potential(self, z: Tensor, energy: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        """The energy and gradient a kernel uses at ``z``, from ``E``'s own values there: ``E`` itself.

        A tempered target (:class:`~latentmcmc.samplers.tempering.TemperedTarget`) maps them to its level.
        """
        return energy, grad

    def check_independent_chains(self, z: Tensor) -> None:
        """Raise if the energy of one chain depends on another chain's state.

        Samplers run chains as a batch; a model that mixes the batch (BatchNorm in training mode,
        minibatch statistics) would make every chain's target depend on the others.  The check
        differentiates the first chain's energy with respect to the whole batch (energies may differ
        per chain, so the batch is not cut) and demands exact zeros in the other rows.
        """
        if z.shape[0] < 2:
            return
        with torch.enable_grad():
            zs = z.detach().clone().requires_grad_(True)
            energy = self.fn(zs)
            if not isinstance(energy, Tensor) or energy.shape != zs.shape[:1]:
                return  # shape problems are reported by value_and_grad
            (grad,) = torch.autograd.grad(energy[0], zs, allow_unused=True)
        if grad is not None and bool((grad[1:] != 0).any()):
            raise ValueError(
                "energy couples chains: the energy of chain 0 depends on the states of other chains "
                "(BatchNorm in training mode or another layer that mixes the batch?); put the model in "
                "eval mode or remove the coupling"
            )


def as_target(energy: EnergyFn | Target | "LatentEnergy") -> Target:
    """Wrap an energy (a callable ``z -> (chains,)``, a :class:`LatentEnergy`, or a Target)."""
    if isinstance(energy, Target):
        return energy
    if not callable(energy):
        raise ValueError(f"energy must be callable (z -> (chains,) energies), got {type(energy).__name__}")
    vg = energy.value_and_grad if isinstance(energy, SupportsValueAndGrad) else None
    return Target(energy, vg, getattr(energy, "latent_prior", None) or STANDARD_NORMAL)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_target(target: Target, mode: bool | str = True) -> Target:
    """The same target with its energy compiled by ``torch.compile`` (``mode`` True means "default").

    The energy function is compiled and differentiated by autograd, so the backward pass is compiled
    too (AOTAutograd).  ``"reduce-overhead"`` adds CUDA graphs on a GPU where the model allows
    them.  Random numbers stay outside the compiled code, so a sampler with a compiled target draws
    the same noise and makes the same accept decisions as the eager one for the same seed; states
    agree to floating-point rounding (fused kernels may round differently), not bit for bit.  With
    CUDA graphs the energy and gradient are copied out of the graph's memory after each call.  A
    target that brings its own ``value_and_grad`` (other than a :class:`LatentEnergy`'s autograd
    one) has that function compiled instead.
    """
    if mode is True:
        mode = "default"
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be True/False or one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    fn = target.fn
    if target._value_and_grad is not None and not isinstance(fn, LatentEnergy):
        compiled, value_and_grad = fn, torch.compile(target._value_and_grad, mode=mode, dynamic=False)
    else:
        compiled = torch.compile(fn, mode=mode, dynamic=False)
        value_and_grad = functools.partial(_autograd_value_and_grad, compiled)
    if mode not in ("reduce-overhead", "max-autotune"):
        return Target(compiled, value_and_grad, target.prior)

    def replayed(z: Tensor) -> tuple[Tensor, Tensor]:
        # CUDA graphs reuse their output memory on the next replay, but a sampler keeps the current
        # state's energy and gradient while it evaluates the proposal: copy them out
        torch.compiler.cudagraph_mark_step_begin()
        energy, grad = value_and_grad(z)
        return energy.clone(), grad.clone()

    return Target(compiled, replayed, target.prior)


class LatentEnergy:
    r"""Energy of a generator's latent space under an energy-based critic.

    .. math::  E(u) = \beta\, U(G(T(u)), c) + E_0(u), \qquad E_0(u) = -\log p(T(u)) - \log\lvert\det J_T(u)\rvert

    ``U`` is the critic read as an energy (lower = more like the data), ``G`` the generator, ``beta``
    an inverse temperature on the critic term, ``p`` the latent prior and ``T`` the map from the
    unconstrained space the chains move in to the prior's support (:mod:`latentmcmc.priors`).  For the
    default ``N(0, I)`` prior ``T`` is the identity and ``E(z) = beta U(G(z)) + 0.5|z|^2``.
    ``critic_output`` says what the critic outputs (:data:`~latentmcmc.critics.CRITIC_OUTPUTS`):
    ``"energy"`` (``U = D(x)``; WGAN/energy-GAN critics), ``"logit"`` (a discriminator logit, higher for
    real data: ``U = -logit``, as in DDLS) or ``"probability"`` (``D(x)`` = P(real) in (0, 1):
    ``U = -logit(p)``, with a final Sigmoid removed exactly when it can be).  ``critic_sign=-1`` is the
    0.1 spelling of ``critic_output="logit"``.  With ``prior=False`` the prior term is dropped, as in the
    original energy-GAN formula; the target may then be improper (chains drift to where ``G``
    extrapolates), so that choice warns.  Neither form includes the Jacobian of ``G``: the latent energy
    is a refinement heuristic, not the exact pull-back of ``exp(-U)``.

    ``condition`` (class-conditional models): a tensor with one row per chain, ``(chains, ...)`` (class
    ids or any tensor), passed as ``G(z, c)`` and ``D(x, c)``.  A condition is a constant of its chain:
    a batch of ``k * chains`` latents is read chain-major (chain ``i``'s rows are ``i k .. i k + k - 1``,
    as i-SIR's candidates are), so every sampler runs unchanged.

    Construction puts both networks in eval mode and freezes their parameters (``requires_grad``
    off), so a step differentiates with respect to ``z`` only.  Call ``.train()`` and
    ``.requires_grad_(True)`` on them to train again.

    Args:
        generator: module ``(chains, *latent_shape) -> (chains, *data_shape)`` (with a condition:
            ``(z, c) -> x``).
        critic: module ``(chains, *data_shape) -> (chains,)``, ``(chains, 1)`` or ``(chains, 1, 1, 1)`` (with a
            condition: ``(x, c)``).
        beta: inverse temperature, finite and >= 0.
        prior: True for ``N(0, I)``, False for no prior term, a name of :data:`~latentmcmc.priors.PRIORS`
            (``"uniform:-1,1"``), a ``torch.distributions.Distribution`` or a :class:`~latentmcmc.priors.LatentPrior`.
        latent_shape: if given, inputs must have shape ``(chains, *latent_shape)``.
        critic_sign: +1 (energy) or -1 (logit); kept from 0.1, ``critic_output`` says more.
        critic_output: ``"energy"``, ``"logit"`` or ``"probability"``.
        condition: ``(chains, ...)`` per-chain conditions, or None.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        beta: float = 1.0,
        prior: Any = True,
        latent_shape: tuple[int, ...] | None = None,
        critic_sign: float = 1.0,
        critic_output: str | None = None,
        condition: Tensor | None = None,
    ) -> None:
        if not callable(generator):
            raise ValueError("generator must be a callable module")
        if not callable(critic):
            raise ValueError("critic must be a callable module")
        beta = check_beta(beta)
        if critic_sign not in (1, -1):
            raise ValueError(f"critic_sign must be +1 (critic outputs an energy) or -1 (a realness logit), got {critic_sign}")
        self.critic_output = resolve_critic_output(critic_sign, critic_output)
        self.critic_sign = 1.0 if self.critic_output == "energy" else -1.0
        self.generator = generator
        self.critic = critic
        self.beta = beta
        self.latent_prior: LatentPrior | None = as_prior(prior)
        self.prior = self.latent_prior is not None
        self.latent_shape = tuple(latent_shape) if latent_shape is not None else None
        if self.latent_prior is not None and self.latent_shape is not None:
            self.latent_prior.check(self.latent_shape)
        if condition is not None and (not isinstance(condition, Tensor) or condition.dim() < 1):
            raise ValueError(f"condition must be a tensor with one row per chain, got "
                             f"{type(condition).__name__ if not isinstance(condition, Tensor) else 'a 0-d tensor'}")
        self.condition = condition
        for module in (generator, critic):
            if isinstance(module, nn.Module):
                try:
                    module.eval()
                except NotImplementedError:  # torch.export.load(...).module(): train/eval was fixed at export
                    pass
                module.requires_grad_(False)
        from .critics import energy_critic

        self.energy_of_critic, self.critic_reading = energy_critic(critic, self.critic_output)
        if not self.prior:
            warnings.warn(
                "LatentEnergy(prior=False): without the prior term the latent target can be "
                "improper; chains may drift to where the generator extrapolates and step-size "
                "adaptation may grow eps without bound. Keep prior=True unless you know E is proper.",
                UserWarning,
                stacklevel=2,
            )

    def with_condition(self, condition: Tensor | None) -> "LatentEnergy":
        """The same energy with other per-chain conditions (a block's rows of a run's)."""
        other = copy.copy(self)
        other.condition = condition
        return other

    def conditions_for(self, n: int) -> Tensor | None:
        """The condition of each of ``n`` rows: the chains' own (``n = chains``), each repeated ``n / chains``
        times in a row (a chain-major batch of candidates), or a ValueError."""
        c = self.condition
        if c is None:
            return None
        chains = c.shape[0]
        if n == chains:
            return c
        if n % chains == 0:
            return c.repeat_interleave(n // chains, 0)
        raise ValueError(f"a batch of {n} latents for {chains} chains' conditions: a conditional energy takes the "
                         "chains, or k candidates per chain in chain-major order")

    def latent(self, u: Tensor) -> Tensor:
        """Chain states in the prior's space, ``z = T(u)``."""
        return u if self.latent_prior is None else self.latent_prior.to_latent(u)

    def generate(self, u: Tensor, condition: Tensor | None = None) -> Tensor:
        """``G(T(u))`` (with ``condition``, or the chains' own conditions when ``u`` holds them all)."""
        c = condition if condition is not None else self.conditions_for(u.shape[0])
        z = self.latent(u)
        return self.generator(z) if c is None else self.generator(z, c)

    def critic_energy(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """``U(x, c)`` (with ``condition``, or the chains' own conditions when ``x`` holds samples of them all)."""
        c = condition if condition is not None else self.conditions_for(x.shape[0])
        return self.energy_of_critic(x) if c is None else self.energy_of_critic(x, c)

    def __call__(self, z: Tensor) -> Tensor:
        if self.latent_shape is not None and tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"z has shape {tuple(z.shape)}; this LatentEnergy expects (chains, *{self.latent_shape})"
            )
        c = self.conditions_for(z.shape[0])
        u = self.critic_energy(self.generate(z, c), c)
        if not one_per_sample(u.shape, z.shape[0]):
            raise ValueError(
                f"critic returned shape {tuple(u.shape)}; expected ({z.shape[0]},), ({z.shape[0]}, 1) or "
                f"({z.shape[0]}, 1, 1, 1), one energy per sample"
            )
        energy = self.beta * u.reshape(z.shape[0])
        if self.latent_prior is not None:
            energy = energy + self.latent_prior.energy(z)
        return energy

    def value_and_grad(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Energy ``(chains,)`` and gradient ``(chains, *latent_shape)`` in one forward+backward."""
        return _autograd_value_and_grad(self, z)

    def __repr__(self) -> str:
        kind = "" if self.critic_output == "energy" else f", critic_output={self.critic_output!r}"
        prior = "False" if self.latent_prior is None else ("True" if self.latent_prior.standard
                                                            else repr(self.latent_prior.name))
        cond = "" if self.condition is None else f", condition=<{self.condition.shape[0]} chains>"
        return f"LatentEnergy(beta={self.beta}, prior={prior}{kind}{cond})"


def resolve_critic_output(critic_sign: float = 1.0, critic_output: str | None = None) -> str:
    """``critic_output``, or what the 0.1 ``critic_sign`` meant (+1 energy, -1 logit); a contradiction is an error."""
    from .critics import CRITIC_OUTPUTS

    if critic_output is None:
        return "energy" if critic_sign == 1 else "logit"
    if critic_output not in CRITIC_OUTPUTS:
        raise ValueError(f"unknown critic_output {critic_output!r}; choose one of {', '.join(CRITIC_OUTPUTS)}")
    if critic_sign == -1 and critic_output != "logit":
        raise ValueError(f"critic_sign -1 (0.1's spelling of critic_output logit) contradicts critic_output "
                         f"{critic_output}: give one of them")
    return critic_output
