"""Hamiltonian Monte Carlo: batched leapfrog trajectories with a Metropolis-Hastings accept; ChEES trajectory length."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from ..chains import Evaluations
from .base import Sampler
from .kernel import SamplerState, broadcast_chains, gradient_state
from .metropolis import MetropolisHastings, Proposal

__all__ = ["HMC", "LeapfrogProposer", "ChEESAdapter", "halton"]


def halton(index: int, base: int = 2) -> float:
    """The ``index``-th element (from 1) of the van der Corput / Halton sequence in base ``base``, in (0, 1)."""
    result, f, i = 0.0, 1.0 / base, index
    while i > 0:
        result += f * (i % base)
        i //= base
        f /= base
    return result


class HMCNoise(NamedTuple):
    momentum: Tensor  # (chains, *latent_shape) p ~ N(0, I)
    leapfrog_steps: int  # steps of this trajectory (shared by all chains)


class LeapfrogProposer:
    r"""The HMC proposal: momentum ``p ~ N(0, I)``, ``L`` leapfrog steps of size ``eps``, log ratio ``H(z, p) - H(z', p')``.

    ``H(z, p) = E(z) + |p|^2 / 2`` (unit mass).  Leapfrog: ``p -= (eps/2) grad E``, then ``L`` times
    ``z += eps p`` and ``p -= eps grad E`` (the last a half step).  Reversible and volume preserving,
    so ``MetropolisHastings(LeapfrogProposer(L))`` leaves ``exp(-E)`` invariant for any ``eps`` and ``L``.
    ``L`` is fixed, or (ChEES) set per step from a trajectory length ``T``: ``ceil(u_k T / eps)`` with
    ``u_k`` the ``k``-th element of the Halton sequence (a jitter that needs no random numbers).  The
    proposal's end point and momentum are passed on (``StepInfo.aux``) for the ChEES criterion.
    """

    def __init__(self, leapfrog_steps: int, max_leapfrog_steps: int = 1000) -> None:
        self.leapfrog_steps = leapfrog_steps
        self.max_leapfrog_steps = max_leapfrog_steps
        self.trajectory_length: float | None = None  # set by ChEESAdapter: jittered steps from T / eps
        self.eps_for_length: float | None = None
        self._index = 0

    def init(self, target, z: Tensor) -> SamplerState:
        self._index = 0
        return gradient_state(target, z)

    @property
    def fusable(self) -> bool:
        """A fixed number of leapfrog steps compiles as one graph; ChEES's jittered numbers would each need their own."""
        return self.trajectory_length is None

    def steps(self) -> int:
        """Leapfrog steps of the next trajectory: fixed, or jittered from the adapted trajectory length."""
        if self.trajectory_length is None:
            return self.leapfrog_steps
        self._index += 1
        n = math.ceil(halton(self._index) * self.trajectory_length / self.eps_for_length)
        return int(min(max(n, 1), self.max_leapfrog_steps))

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None) -> HMCNoise:
        z = state.z
        return HMCNoise(torch.randn(z.shape, generator=rng, dtype=z.dtype, device=z.device), self.steps())

    def propose(self, target, state: SamplerState, eps: Tensor, noise: HMCNoise) -> Proposal:
        z = state.z
        step = broadcast_chains(eps, z)
        energy0, grad = target.potential(z, state.energy, state.grad)
        p = noise.momentum - 0.5 * step * grad
        energy, grad_e = state.energy, state.grad
        for k in range(noise.leapfrog_steps):
            z = z + step * p
            energy, grad_e = target.value_and_grad(z)
            energy_l, grad = target.potential(z, energy, grad_e)
            p = p - (0.5 if k == noise.leapfrog_steps - 1 else 1.0) * step * grad
        kinetic0 = 0.5 * noise.momentum.reshape(z.shape[0], -1).square().sum(1)
        kinetic = 0.5 * p.reshape(z.shape[0], -1).square().sum(1)
        log_ratio = (energy0 + kinetic0) - (energy_l + kinetic)
        return Proposal(z, energy, grad_e, log_ratio, aux=(z, p))

    def evaluations(self, noise: HMCNoise) -> Evaluations:
        return Evaluations(noise.leapfrog_steps, noise.leapfrog_steps)

    def state_dict(self) -> dict:
        return {"index": self._index, "trajectory_length": self.trajectory_length, "eps_for_length": self.eps_for_length}

    def load_state_dict(self, d: dict) -> None:
        self._index, self.trajectory_length, self.eps_for_length = d["index"], d["trajectory_length"], d["eps_for_length"]


class ChEESAdapter:
    r"""Trajectory length by ChEES (Hoffman, Radul & Sountsov 2021), across chains, during warm-up.

    ChEES is ``E[(|z' - mean'|^2 - |z - mean|^2)^2] / 4`` over chains (``z`` before, ``z'`` the
    proposal): the change in the estimator of the expected square.  Its gradient in ``log T`` is
    estimated as ``u T sum_i a_i (|z'_i - m'|^2 - |z_i - m|^2) ((z'_i - m') . p'_i) / sum_i a_i`` with the
    acceptance probabilities ``a_i`` as weights (divergent chains excluded); ``log T`` climbs it with
    Adam (learning rate 0.025, beta1 0, beta2 0.95, updates clipped to +-0.35, as in TFP), and the
    trajectory length used after warm-up is ``exp`` of the moving average of ``log T`` (weight
    ``k^-0.5`` at step ``k``).  The first fifth of the warm-up runs the fixed ``leapfrog_steps`` while
    dual averaging finds eps; ChEES then starts from ``T = leapfrog_steps * eps`` (a trajectory length
    anchored to the initial eps, often 40x too small, would take most of a short warm-up to grow).
    Needs a shared eps.  Each warm-up step reads eps and the gradient back to the host (the number of
    leapfrog steps is a loop bound).
    """

    def __init__(self, proposer: LeapfrogProposer, warmup: int, lr: float = 0.025, beta2: float = 0.95,
                 clip: float = 0.35, decay: float = 0.5) -> None:
        self.proposer = proposer
        self.delay = warmup // 5
        self.log_t = self.log_t_avg = float("nan")
        self.lr, self.beta2, self.clip, self.decay = lr, beta2, clip, decay
        self.v = 0.0
        self.k = 0
        self.seen = 0
        proposer.trajectory_length = None  # fixed leapfrog_steps until ChEES starts

    def _start(self, eps: Tensor) -> None:
        eps_now = float(eps.mean())
        self.log_t = self.log_t_avg = math.log(self.proposer.leapfrog_steps * eps_now)
        self.proposer.trajectory_length, self.proposer.eps_for_length = math.exp(self.log_t), eps_now

    def update(self, before: SamplerState, state: SamplerState, info, eps: Tensor) -> None:
        self.seen += 1
        if self.seen <= self.delay:
            return
        if self.proposer.trajectory_length is None:  # the first ChEES step: the previous trajectory had fixed length
            self._start(eps)
            return
        n = before.z.shape[0]
        proposed, momentum = info.aux
        self._step(before.z.reshape(n, -1), proposed.reshape(n, -1), momentum.reshape(n, -1), info.accept_prob,
                   info.diverging, eps)

    def _step(self, z0: Tensor, z1: Tensor, p: Tensor, accept: Tensor, diverging: Tensor, eps: Tensor) -> None:
        w = torch.where(diverging | ~torch.isfinite(accept), torch.zeros_like(accept), accept)
        ok = torch.isfinite(z1).all(1) & torch.isfinite(p).all(1) & ~diverging
        w = torch.where(ok, w, torch.zeros_like(w))
        z1 = torch.where(ok[:, None], z1, torch.zeros_like(z1))
        p = torch.where(ok[:, None], p, torch.zeros_like(p))
        m1 = (w[:, None] * z1).sum(0) / w.sum().clamp(min=1e-20)
        m0 = z0.mean(0)
        c1, c0 = z1 - m1, z0 - m0
        jitter = halton(self.proposer._index) if self.proposer._index else 1.0
        g = jitter * math.exp(self.log_t) * (c1.square().sum(1) - c0.square().sum(1)) * (c1 * p).sum(1)
        grad = float((w * g).sum() / w.sum().clamp(min=1e-20))
        self.k += 1
        if math.isfinite(grad):
            self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
            v_hat = self.v / (1 - self.beta2 ** self.k)
            update = self.lr * grad / (math.sqrt(v_hat) + 1e-8)  # ascent: ChEES is maximised
            self.log_t += max(-self.clip, min(self.clip, update))
        weight = self.k ** -self.decay
        self.log_t_avg = (1 - weight) * self.log_t_avg + weight * self.log_t
        self.proposer.trajectory_length = math.exp(self.log_t)
        self.proposer.eps_for_length = float(eps.mean())

    _FIELDS = ("log_t", "log_t_avg", "v", "k", "seen")

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._FIELDS}

    def load_state_dict(self, d: dict) -> None:
        for name in self._FIELDS:
            setattr(self, name, d[name])

    def finish(self, eps: Tensor) -> None:
        if self.proposer.trajectory_length is None:  # too short a warm-up for ChEES to start
            self._start(eps)
        self.proposer.eps_for_length = float(eps.mean())
        limit = self.proposer.max_leapfrog_steps * self.proposer.eps_for_length
        self.proposer.trajectory_length = min(max(math.exp(self.log_t_avg), self.proposer.eps_for_length), limit)


class HMC(Sampler):
    r"""Hamiltonian Monte Carlo with unit mass, batched over chains, Metropolis-Hastings corrected.

    One step draws ``p ~ N(0, I)``, runs ``leapfrog_steps`` leapfrog steps of size ``eps`` on
    ``H(z, p) = E(z) + |p|^2/2`` and accepts with probability ``min(1, exp(H(z, p) - H(z', p')))``.
    Here ``eps`` is the leapfrog step size (Stan's and BlackJAX's ``step_size``); one leapfrog step of
    size ``h`` is MALA with ``eps = h^2``.  eps is adapted during warm-up by dual averaging as for MALA,
    to a target acceptance of 0.65 (Beskos et al. 2013).  With ``chees=True`` the trajectory length
    ``T = L eps`` is adapted across chains during warm-up by ChEES (:class:`ChEESAdapter`; needs a
    shared eps), each trajectory jittered to ``ceil(u T / eps)`` steps with ``u`` from a Halton sequence.
    A step costs its number of leapfrog steps in forward and in backward passes.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: leapfrog step size; a scalar is shared, a ``(chains,)`` tensor per chain.
        leapfrog_steps: steps per trajectory (>= 1); with ``chees`` the initial ``T = leapfrog_steps * eps``.
        chees: adapt the trajectory length by ChEES during warm-up.
        max_leapfrog_steps: cap on the jittered number of steps with ``chees``.
        compile: compile the energy with ``torch.compile``.
    """

    default_target_accept = 0.65

    def __init__(self, energy, eps: float | Tensor = 0.01, leapfrog_steps: int = 10, chees: bool = False,
                 max_leapfrog_steps: int = 1000, compile: bool | str = False) -> None:
        for name, value in (("leapfrog_steps", leapfrog_steps), ("max_leapfrog_steps", max_leapfrog_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.leapfrog_steps = leapfrog_steps
        self.max_leapfrog_steps = max_leapfrog_steps
        self.chees = bool(chees)
        super().__init__(energy, eps, compile)
        if self.chees and not self.shared_eps:
            raise ValueError("HMC(chees=True) adapts one trajectory length for all chains: give a scalar eps")

    def make_kernel(self) -> MetropolisHastings:
        return MetropolisHastings(LeapfrogProposer(self.leapfrog_steps, self.max_leapfrog_steps))

    def warmup_adapters(self, state: SamplerState, warmup: int = 0) -> list:
        proposer = self.kernel.proposer
        proposer.trajectory_length = None
        if not self.chees:
            return []
        if warmup < 50:
            warnings.warn(f"HMC(chees=True) adapts the trajectory length during warm-up; {warmup} warm-up steps are too "
                          "few for it to move far from leapfrog_steps * eps (use 200 or more)", UserWarning, stacklevel=4)
        return [ChEESAdapter(proposer, warmup)]

    def run_extras(self) -> dict:
        return {"trajectory_length": self.trajectory_length} if self.chees else {}

    @property
    def trajectory_length(self) -> float | None:
        """The ChEES-adapted trajectory length after a run (None for a fixed number of leapfrog steps)."""
        return self.kernel.proposer.trajectory_length
