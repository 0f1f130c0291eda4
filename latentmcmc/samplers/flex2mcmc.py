"""FlEx2MCMC: Ex2MCMC whose i-SIR proposal is a normalizing flow fitted to the chains during warm-up.

The flow comes from zuko (``pip install "latentmcmc[flows]"``): a small, actively maintained
PyTorch flow library whose coupling flows trained 1.5-1.9x and sampled 1.2-1.7x faster than
normflows' at latent sizes 2-128 here (``benchmarks/flow_libraries.py``); nflows has had no release
since 2020.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, NamedTuple

import torch
from torch import Tensor, nn

from .ex2mcmc import LOCAL_STEPS, Ex2MCMC
from .isir import CANDIDATES
from .kernel import SamplerState
from .options import COMPILE, EPS, Option, positive_number
from .proposals import LatentProposal, _seed_from

__all__ = ["FlEx2MCMC", "FlowProposal", "FlowFit", "FlowParams", "default_flow", "FLOW", "FLOW_LR"]


def default_flow(features: int) -> nn.Module:
    """zuko's RealNVP with 4 coupling transforms and two hidden layers of 64 units (MAF for one feature)."""
    try:
        import zuko
    except ImportError as err:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError('FlEx2MCMC needs the zuko flow library: pip install "latentmcmc[flows]"') from err
    if features < 2:
        return zuko.flows.MAF(features=features, transforms=4, hidden_features=(64, 64))
    return zuko.flows.RealNVP(features=features, transforms=4, hidden_features=(64, 64))


def _check_flow(flow: Any) -> Any:
    if flow is not None and not (isinstance(flow, nn.Module) and callable(flow)):
        raise ValueError(f"must be a module whose call returns a distribution (zuko's flows), got {type(flow).__name__}")
    return flow


FLOW = Option("flow", None, "The flow (a module whose call returns a distribution over the flattened latent, as "
              "zuko's flows), or None for zuko's RealNVP.", None, _check_flow)
FLOW_LR = Option("flow_lr", 1e-3, "Adam learning rate of the flow fitted in warm-up.", float, positive_number)


class FlowParams(NamedTuple):
    """FlEx2MCMC's parameters in a run: eps, and the tensors (parameters and buffers) of its flow."""

    eps: Tensor
    flow: dict[str, Tensor]  # the flow module's state_dict, as this run's own tensors
    features: int  # values in one flattened latent (which default flow the tensors belong to)


@contextlib.contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[None]:
    """``module`` in training or evaluation mode for the duration, its own mode restored after."""
    before = module.training
    module.train(training)
    try:
        yield
    finally:
        module.train(before)


class _FlowCall(nn.Module):
    """``flow()``'s distribution sampled or scored in one call, so that ``functional_call`` can swap in a run's tensors."""

    def __init__(self, flow: nn.Module) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, what: str, arg: Any) -> Tensor:
        dist = self.flow()
        return dist.sample(arg) if what == "sample" else dist.log_prob(arg)


class FlowProposal(LatentProposal):
    """A flow as an i-SIR proposal: ``flow()`` is a distribution over flat latents (zuko's convention).

    The module only gives the flow's structure and its initial tensors: a run evaluates it with its own
    copies of the tensors (``params.flow``, through ``torch.func.functional_call``), so neither fitting
    nor sampling changes the module.  ``flow=None`` builds :func:`default_flow` for the latent size
    (from a fixed seed: the same initial flow in every run and process).
    """

    def __init__(self, flow: nn.Module | None = None) -> None:
        self.flow = _check_flow(flow)
        self._default: dict[int, nn.Module] = {}  # default flows by latent size (deterministic, built once)

    def module(self, features: int) -> nn.Module:
        """The flow module for latents of ``features`` values."""
        if self.flow is not None:
            return self.flow
        if features not in self._default:
            with torch.random.fork_rng(devices=[]):  # the same initial flow every time: a seed fixes the draws
                torch.manual_seed(0)
                self._default[features] = default_flow(features)
        return self._default[features]

    def init_params(self, eps: Tensor, z: Tensor) -> FlowParams:
        features = z[0].numel()
        state = self.module(features).state_dict()
        return FlowParams(eps, {name: t.detach().clone().to(device=z.device, dtype=z.dtype if t.is_floating_point()
                                                                 else t.dtype) for name, t in state.items()}, features)

    def call(self, params: FlowParams, what: str, arg: Any, training: bool = False) -> Tensor:
        """Sample (``what="sample"``, ``arg`` the sample shape) or score (``"log_prob"``) with the run's tensors."""
        module = self.module(params.features)
        with _mode(module, training):
            return torch.func.functional_call(_FlowCall(module), {f"flow.{k}": v for k, v in params.flow.items()},
                                              (what, arg))

    def check(self, like: Tensor, params: FlowParams | None = None) -> None:
        d = like[0].numel()
        if params is None:
            params = self.init_params(torch.ones(like.shape[0], dtype=like.dtype, device=like.device), like)
        with torch.no_grad():
            dist = self.module(d)()
            if not (callable(getattr(dist, "sample", None)) and callable(getattr(dist, "log_prob", None))):
                raise ValueError(f"flow() must return a distribution with .sample and .log_prob, got {type(dist).__name__}")
            z = self.call(params, "sample", (2,))
            if tuple(z.shape) != (2, d):
                raise ValueError(f"flow draws have shape {tuple(z.shape[1:])}; the latent has {d} values "
                                 f"(shape {tuple(like.shape[1:])}), flattened")
            lp = self.call(params, "log_prob", z)
            if tuple(lp.shape) != (2,):
                raise ValueError(f"flow().log_prob returned shape {tuple(lp.shape)} for 2 latents; expected (2,)")

    def sample(self, n: int, rng: torch.Generator | None, like: Tensor, params: FlowParams | None = None) -> Tensor:
        devices = [like.device] if like.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(_seed_from(rng))
            z = self.call(params, "sample", (n,))
        return z.reshape((n,) + tuple(like.shape[1:])).to(like.dtype)

    def log_prob(self, z: Tensor, params: FlowParams | None = None, training: bool = False) -> Tensor:
        return self.call(params, "log_prob", z.reshape(z.shape[0], -1), training)

    def report(self, params: FlowParams) -> dict:
        """``{"flow": a copy of the flow module holding the run's tensors}`` (frozen, in evaluation mode)."""
        module = copy.deepcopy(self.module(params.features))
        module.load_state_dict({name: t.detach() for name, t in params.flow.items()})
        return {"flow": module.requires_grad_(False).eval()}


class FlowFit:
    r"""Fits one run's flow during warm-up by importance-weighted maximum likelihood on i-SIR's candidates.

    At each warm-up step, with the candidates ``y_ij`` of chain ``i`` (its current point included) and
    their self-normalised importance weights ``wbar_ij`` (the forward KL of Samsonov et al. 2022):

    .. math::  \mathcal{L} = -\frac1n \sum_i \sum_j \bar w_{ij} \log q_\phi(y_{ij})

    one Adam step on the run's copy of the flow's parameters (``params.flow``).  A non-finite loss or
    parameter stops the run with a ValueError naming the step (nothing is recorded as if valid).
    ``finish`` freezes the flow, so the recorded steps are an exact MCMC kernel.  The optimizer's state
    is checkpointed with the run; the flow module itself is never changed.
    """

    def __init__(self, proposal: FlowProposal, lr: float) -> None:
        self.proposal = proposal
        self.lr = lr
        self.optimizer: torch.optim.Optimizer | None = None
        self.k = 0

    def start(self, params: FlowParams) -> FlowParams:
        """The run's flow tensors as leaves to fit (the module's trainable ones), with a fresh Adam on them."""
        trainable = {name for name, _ in self.proposal.module(params.features).named_parameters()}
        flow = {name: t.detach().clone().requires_grad_(name in trainable) for name, t in params.flow.items()}
        self.optimizer = torch.optim.Adam([t for name, t in flow.items() if name in trainable], lr=self.lr)
        return params._replace(flow=flow)

    def update(self, params: FlowParams, before: SamplerState, state: SamplerState, info, eps: Tensor) -> FlowParams:
        y, log_w = info.aux
        self.k += 1
        weights = torch.softmax(log_w, 1).detach()
        with torch.enable_grad():
            log_q = self.proposal.log_prob(y.reshape((-1,) + tuple(y.shape[2:])), params, training=True)
            log_q = log_q.reshape(log_w.shape)
            log_q = torch.where(weights > 0, log_q, torch.zeros_like(log_q))
            loss = -(weights * log_q).sum(1).mean()
            if not bool(torch.isfinite(loss)):
                raise ValueError(f"FlEx2MCMC: fitting the flow gave a non-finite loss ({float(loss.detach())}) at warm-up step "
                                 f"{self.k}; nothing was recorded. Lower flow_lr, or check the flow")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        if not all(bool(torch.isfinite(t).all()) for t in params.flow.values()):
            raise ValueError(f"FlEx2MCMC: the flow's parameters became non-finite at warm-up step {self.k}; nothing "
                             "was recorded. Lower flow_lr")
        return params

    def finish(self, params: FlowParams) -> FlowParams:
        return params._replace(flow={name: t.detach() for name, t in params.flow.items()})

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "k": self.k}

    def load_state_dict(self, d: dict) -> None:
        self.optimizer.load_state_dict(d["optimizer"])
        self.k = d["k"]


class FlEx2MCMC(Ex2MCMC):
    r"""FlEx2MCMC (Samsonov et al. 2022): Ex2MCMC whose i-SIR proposal is a normalizing flow.

    The flow (zuko; by default a RealNVP, :func:`default_flow`) is fitted to the chains during warm-up
    only (:class:`FlowFit`: importance-weighted maximum likelihood on i-SIR's candidates, one Adam
    step per warm-up step) and frozen for the recorded steps, so the recorded chain is an exact MCMC
    kernel: i-SIR with a fixed proposal, then MALA.  Needs ``warmup >= 1``; eps adapts as in
    :class:`Ex2MCMC`.  Each run fits its own copy of the flow's tensors, starting from the flow given
    (or the default flow's fixed initialisation): the module passed in is never changed, and the same
    sampler and seed give the same draws in every run, block and process.  The fitted flow is
    ``chains.extra["flow"]``.

    Args:
        energy: the target: a callable ``z -> (chains,)`` energies or a :class:`LatentEnergy`.
        eps: step size of the MALA steps.
        candidates: ``K >= 2`` i-SIR points per step, the current one included.
        local_steps: MALA steps after each global move (>= 0).
        flow: a zuko flow (a module whose call returns a distribution over the flattened latent), or
            None for :func:`default_flow`.
        flow_lr: Adam learning rate of the flow fit.
        compile: compile the energy with ``torch.compile``.
    """

    options = (EPS, CANDIDATES, LOCAL_STEPS, FLOW, FLOW_LR, COMPILE)
    needs_warmup = "fits its flow during warm-up"

    def make_kernel(self):
        from .ex2mcmc import Ex2MCMCKernel

        return Ex2MCMCKernel(self.candidates, self.local_steps, FlowProposal(self.flow))

    def warmup_adapters(self, warmup: int = 0) -> list:
        return [FlowFit(self.kernel.proposal, self.flow_lr)]
