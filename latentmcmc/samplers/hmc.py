"""Hamiltonian Monte Carlo: batched leapfrog trajectories with a Metropolis-Hastings accept; ChEES trajectory length."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from ..evaluations import Evaluations
from .base import Sampler
from .kernel import SamplerState, broadcast_chains, gradient_state
from .metropolis import MetropolisHastings, Proposal
from .options import COMPILE, EPS, Option, boolean, integer

__all__ = ["HMC", "HMCParams", "LeapfrogProposer", "ChEESAdapter", "halton", "LEAPFROG_STEPS", "CHEES",
           "MAX_LEAPFROG_STEPS"]


def halton(index: int, base: int = 2) -> float:
    """The ``index``-th element (from 1) of the van der Corput / Halton sequence in base ``base``, in (0, 1)."""
    result, f, i = 0.0, 1.0 / base, index
    while i > 0:
        result += f * (i % base)
        i //= base
        f /= base
    return result


class HMCParams(NamedTuple):
    """HMC's parameters in a run: eps, and with ChEES the trajectory length and the eps it was set at."""

    eps: Tensor  # (chains,) leapfrog step size
    trajectory_length: float | None = None  # ChEES: T, each trajectory jittered to ceil(u T / eps_for_length) steps
    eps_for_length: float | None = None


class HMCNoise(NamedTuple):
    momentum: Tensor  # (chains, *latent_shape) p ~ N(0, I)
    leapfrog_steps: int  # steps of this trajectory (shared by all chains)
    index: int | None = None  # the Halton index of a jittered trajectory (the state's next carry)


LEAPFROG_STEPS = Option("leapfrog_steps", 10, "Leapfrog steps per trajectory (the starting length with chees).",
                        int, integer(1))
CHEES = Option("chees", False, "Adapt the trajectory length across chains by ChEES in warm-up.", bool, boolean)
MAX_LEAPFROG_STEPS = Option("max_leapfrog_steps", 1000, "With chees: the most leapfrog steps of a jittered trajectory "
                            "(Python only).", None, integer(1))


class LeapfrogProposer:
    r"""The HMC proposal: momentum ``p ~ N(0, I)``, ``L`` leapfrog steps of size ``eps``, log ratio ``H(z, p) - H(z', p')``.

    ``H(z, p) = E(z) + |p|^2 / 2`` (unit mass).  Leapfrog: ``p -= (eps/2) grad E``, then ``L`` times
    ``z += eps p`` and ``p -= eps grad E`` (the last a half step).  Reversible and volume preserving,
    so ``MetropolisHastings(LeapfrogProposer(L))`` leaves ``exp(-E)`` invariant for any ``eps`` and ``L``.
    ``L`` is fixed, or (``jitter``, ChEES) set per step from the run's trajectory length ``T``
    (:class:`HMCParams`): ``ceil(u_k T / eps)`` with ``u_k`` the ``k``-th element of the Halton sequence (a
    jitter that needs no random numbers; ``k`` is carried in the state).  The proposal's end point and
    momentum are passed on (``StepInfo.aux``) for the ChEES criterion.
    """

    def __init__(self, leapfrog_steps: int, max_leapfrog_steps: int = 1000, jitter: bool = False) -> None:
        self.leapfrog_steps = leapfrog_steps
        self.max_leapfrog_steps = max_leapfrog_steps
        self.fusable = not jitter  # a fixed number of steps compiles as one graph; jittered numbers would each need one

    def init_params(self, eps: Tensor, z: Tensor) -> HMCParams:
        return HMCParams(eps)

    def init(self, target, z: Tensor, params: HMCParams) -> SamplerState:
        return gradient_state(target, z)

    def steps(self, params: HMCParams, index: int) -> int:
        """Leapfrog steps of trajectory ``index`` at trajectory length ``params.trajectory_length``."""
        n = math.ceil(halton(index) * params.trajectory_length / params.eps_for_length)
        return int(min(max(n, 1), self.max_leapfrog_steps))

    def draw_noise(self, state: SamplerState, rng: torch.Generator | None, params: HMCParams) -> HMCNoise:
        z = state.z
        momentum = torch.randn(z.shape, generator=rng, dtype=z.dtype, device=z.device)
        if params.trajectory_length is None:
            return HMCNoise(momentum, self.leapfrog_steps)
        index = (state.carry or 0) + 1
        return HMCNoise(momentum, self.steps(params, index), index)

    def propose(self, target, state: SamplerState, params: HMCParams, noise: HMCNoise) -> Proposal:
        z = state.z
        step = broadcast_chains(params.eps, z)
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
        return Proposal(z, energy, grad_e, log_ratio, aux=(z, p), carry=noise.index)

    def evaluations(self, noise: HMCNoise) -> Evaluations:
        return Evaluations(noise.leapfrog_steps, noise.leapfrog_steps)

    def report(self, params: HMCParams) -> dict:
        return {} if params.trajectory_length is None else {"trajectory_length": params.trajectory_length}


class ChEESAdapter:
    r"""Trajectory length by ChEES (Hoffman, Radul & Sountsov 2021), across chains, during one run's warm-up.

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
    leapfrog steps is a loop bound).  The adapter returns new :class:`HMCParams`; its own state (the
    Adam moments, the average) is checkpointed with the run.
    """

    def __init__(self, leapfrog_steps: int, max_leapfrog_steps: int, warmup: int, lr: float = 0.025,
                 beta2: float = 0.95, clip: float = 0.35, decay: float = 0.5) -> None:
        self.leapfrog_steps, self.max_leapfrog_steps = leapfrog_steps, max_leapfrog_steps
        self.delay = warmup // 5
        self.log_t = self.log_t_avg = float("nan")
        self.lr, self.beta2, self.clip, self.decay = lr, beta2, clip, decay
        self.v = 0.0
        self.k = 0
        self.seen = 0

    def _start(self, params: HMCParams, eps: Tensor) -> HMCParams:
        eps_now = float(eps.mean())
        self.log_t = self.log_t_avg = math.log(self.leapfrog_steps * eps_now)
        return params._replace(trajectory_length=math.exp(self.log_t), eps_for_length=eps_now)

    def update(self, params: HMCParams, before: SamplerState, state: SamplerState, info, eps: Tensor) -> HMCParams:
        """One warm-up transition (``before`` -> ``state``, run with ``eps``): the parameters after it."""
        self.seen += 1
        if self.seen <= self.delay:
            return params
        if params.trajectory_length is None:  # the first ChEES step: the previous trajectory had fixed length
            return self._start(params, eps)
        n = before.z.shape[0]
        proposed, momentum = info.aux
        jitter = halton(state.carry) if state.carry else 1.0
        self._step(before.z.reshape(n, -1), proposed.reshape(n, -1), momentum.reshape(n, -1), info.accept_prob,
                   info.diverging, jitter)
        return params._replace(trajectory_length=math.exp(self.log_t), eps_for_length=float(eps.mean()))

    def _step(self, z0: Tensor, z1: Tensor, p: Tensor, accept: Tensor, diverging: Tensor, jitter: float) -> None:
        w = torch.where(diverging | ~torch.isfinite(accept), torch.zeros_like(accept), accept)
        ok = torch.isfinite(z1).all(1) & torch.isfinite(p).all(1) & ~diverging
        w = torch.where(ok, w, torch.zeros_like(w))
        z1 = torch.where(ok[:, None], z1, torch.zeros_like(z1))
        p = torch.where(ok[:, None], p, torch.zeros_like(p))
        m1 = (w[:, None] * z1).sum(0) / w.sum().clamp(min=1e-20)
        m0 = z0.mean(0)
        c1, c0 = z1 - m1, z0 - m0
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

    _FIELDS = ("log_t", "log_t_avg", "v", "k", "seen")

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._FIELDS}

    def load_state_dict(self, d: dict) -> None:
        for name in self._FIELDS:
            setattr(self, name, d[name])

    def finish(self, params: HMCParams) -> HMCParams:
        """The parameters of the recorded steps: the averaged trajectory length at the final eps."""
        if params.trajectory_length is None:  # too short a warm-up for ChEES to start
            params = self._start(params, params.eps)
        eps_for_length = float(params.eps.mean())
        limit = self.max_leapfrog_steps * eps_for_length
        return params._replace(trajectory_length=min(max(math.exp(self.log_t_avg), eps_for_length), limit),
                               eps_for_length=eps_for_length)


class HMC(Sampler):
    r"""Hamiltonian Monte Carlo with unit mass, batched over chains, Metropolis-Hastings corrected.

    One step draws ``p ~ N(0, I)``, runs ``leapfrog_steps`` leapfrog steps of size ``eps`` on
    ``H(z, p) = E(z) + |p|^2/2`` and accepts with probability ``min(1, exp(H(z, p) - H(z', p')))``.
    Here ``eps`` is the leapfrog step size (Stan's and BlackJAX's ``step_size``); one leapfrog step of
    size ``h`` is MALA with ``eps = h^2``.  eps is adapted during warm-up by dual averaging as for MALA,
    to a target acceptance of 0.65 (Beskos et al. 2013).  With ``chees=True`` the trajectory length
    ``T = L eps`` is adapted across chains during warm-up by ChEES (:class:`ChEESAdapter`; needs a
    shared eps), each trajectory jittered to ``ceil(u T / eps)`` steps with ``u`` from a Halton sequence;
    the adapted length is ``chains.extra["trajectory_length"]``.  A step costs its number of leapfrog
    steps in forward and in backward passes.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: leapfrog step size; a scalar is shared, a ``(chains,)`` tensor per chain.
        leapfrog_steps: steps per trajectory (>= 1); with ``chees`` the initial ``T = leapfrog_steps * eps``.
        chees: adapt the trajectory length by ChEES during warm-up.
        max_leapfrog_steps: cap on the jittered number of steps with ``chees``.
        compile: compile the energy with ``torch.compile``.
    """

    options = (EPS, LEAPFROG_STEPS, CHEES, MAX_LEAPFROG_STEPS, COMPILE)
    default_target_accept = 0.65

    def check_options(self, options: dict) -> None:
        if options["chees"] and options["eps"].dim() != 0:
            raise ValueError("HMC(chees=True) adapts one trajectory length for all chains: give a scalar eps")

    def make_kernel(self) -> MetropolisHastings:
        return MetropolisHastings(LeapfrogProposer(self.leapfrog_steps, self.max_leapfrog_steps, jitter=self.chees))

    def warmup_adapters(self, warmup: int = 0) -> list:
        if not self.chees:
            return []
        if warmup < 50:
            warnings.warn(f"HMC with chees adapts the trajectory length during warm-up; {warmup} warm-up steps are too "
                          "few for it to move far from its start, leapfrog_steps x eps (use 200 or more)", UserWarning,
                          stacklevel=4)
        return [ChEESAdapter(self.leapfrog_steps, self.max_leapfrog_steps, warmup)]
