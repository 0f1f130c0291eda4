"""FlEx2MCMC: Ex2MCMC whose i-SIR proposal is a normalizing flow fitted to the chains during warm-up.

The flow comes from zuko (``pip install "latentmcmc[flows]"``): a small, actively maintained
PyTorch flow library whose coupling flows trained 1.5-1.9x and sampled 1.2-1.7x faster than
normflows' at latent sizes 2-128 here (``benchmarks/flow_libraries.py``); nflows has had no release
since 2020.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .ex2mcmc import Ex2MCMC
from .kernel import SamplerState
from .proposals import LatentProposal, _seed_from

__all__ = ["FlEx2MCMC", "FlowProposal", "FlowFit", "default_flow"]


def default_flow(features: int) -> nn.Module:
    """zuko's RealNVP with 4 coupling transforms and two hidden layers of 64 units (MAF for one feature)."""
    try:
        import zuko
    except ImportError as err:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError('FlEx2MCMC needs the zuko flow library: pip install "latentmcmc[flows]"') from err
    if features < 2:
        return zuko.flows.MAF(features=features, transforms=4, hidden_features=(64, 64))
    return zuko.flows.RealNVP(features=features, transforms=4, hidden_features=(64, 64))


class FlowProposal(LatentProposal):
    """A flow as an i-SIR proposal: ``flow()`` is a distribution over flat latents (zuko's convention).

    ``flow=None`` builds :func:`default_flow` at the first ``check`` (when the latent size is known).
    The flow is moved to the chains' device and dtype.
    """

    def __init__(self, flow: nn.Module | None = None) -> None:
        if flow is not None and not callable(flow):
            raise ValueError(f"flow must be a module whose call returns a distribution (zuko's flows), got "
                             f"{type(flow).__name__}")
        self.flow = flow

    def check(self, like: Tensor) -> None:
        d = like[0].numel()
        if self.flow is None:
            with torch.random.fork_rng(devices=[]):  # the same initial flow every run: a seed fixes the draws
                torch.manual_seed(0)
                self.flow = default_flow(d)
        self.flow.to(device=like.device, dtype=like.dtype)
        with torch.no_grad():
            dist = self.flow()
            if not (callable(getattr(dist, "sample", None)) and callable(getattr(dist, "log_prob", None))):
                raise ValueError(f"flow() must return a distribution with .sample and .log_prob, got {type(dist).__name__}")
            z = dist.sample((2,))
            if tuple(z.shape) != (2, d):
                raise ValueError(f"flow draws have shape {tuple(z.shape[1:])}; the latent has {d} values "
                                 f"(shape {tuple(like.shape[1:])}), flattened")
            lp = dist.log_prob(z)
            if tuple(lp.shape) != (2,):
                raise ValueError(f"flow().log_prob returned shape {tuple(lp.shape)} for 2 latents; expected (2,)")

    def sample(self, n: int, rng: torch.Generator | None, like: Tensor) -> Tensor:
        devices = [like.device] if like.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(_seed_from(rng))
            z = self.flow().sample((n,))
        return z.reshape((n,) + tuple(like.shape[1:])).to(like.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.flow().log_prob(z.reshape(z.shape[0], -1))


class FlowFit:
    r"""Fits the flow during warm-up by importance-weighted maximum likelihood on i-SIR's candidates.

    At each warm-up step, with the candidates ``y_ij`` of chain ``i`` (its current point included) and
    their self-normalised importance weights ``wbar_ij`` (the forward KL of Samsonov et al. 2022):

    .. math::  \mathcal{L} = -\frac1n \sum_i \sum_j \bar w_{ij} \log q_\phi(y_{ij})

    one Adam step on the flow's parameters.  A non-finite loss or parameter stops the run with a
    ValueError naming the step (nothing is recorded as if valid).  ``finish`` freezes the flow, so the
    recorded steps are an exact MCMC kernel.
    """

    def __init__(self, proposal: FlowProposal, lr: float) -> None:
        self.proposal = proposal
        self.flow = proposal.flow
        self.flow.train()
        self.flow.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=lr)
        self.k = 0

    def update(self, before: SamplerState, state: SamplerState, info, eps: Tensor) -> None:
        y, log_w = info.aux
        self.k += 1
        weights = torch.softmax(log_w, 1).detach()
        with torch.enable_grad():
            log_q = self.proposal.log_prob(y.reshape((-1,) + tuple(y.shape[2:]))).reshape(log_w.shape)
            log_q = torch.where(weights > 0, log_q, torch.zeros_like(log_q))
            loss = -(weights * log_q).sum(1).mean()
            if not bool(torch.isfinite(loss)):
                raise ValueError(f"FlEx2MCMC: fitting the flow gave a non-finite loss ({float(loss.detach())}) at warm-up step "
                                 f"{self.k}; nothing was recorded. Lower flow_lr, or check the flow")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        if not all(bool(torch.isfinite(p).all()) for p in self.flow.parameters()):
            raise ValueError(f"FlEx2MCMC: the flow's parameters became non-finite at warm-up step {self.k}; nothing "
                             "was recorded. Lower flow_lr")

    def finish(self, eps: Tensor) -> None:
        self.flow.requires_grad_(False)
        self.flow.eval()

    def state_dict(self) -> dict:
        return {"flow": {k: v.clone() for k, v in self.flow.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "k": self.k}

    def load_state_dict(self, d: dict) -> None:
        self.flow.load_state_dict(d["flow"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.k = d["k"]


class FlEx2MCMC(Ex2MCMC):
    r"""FlEx2MCMC (Samsonov et al. 2022): Ex2MCMC whose i-SIR proposal is a normalizing flow.

    The flow (zuko; by default a RealNVP, :func:`default_flow`) is fitted to the chains during warm-up
    only (:class:`FlowFit`: importance-weighted maximum likelihood on i-SIR's candidates, one Adam
    step per warm-up step) and frozen for the recorded steps, so the recorded chain is an exact MCMC
    kernel: i-SIR with a fixed proposal, then MALA.  Needs ``warmup >= 1``; eps adapts as in
    :class:`Ex2MCMC`.  The fitted flow is ``sampler.flow``.

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

    def __init__(self, energy, eps: float | Tensor = 0.01, candidates: int = 10, local_steps: int = 3,
                 flow: nn.Module | None = None, flow_lr: float = 1e-3, compile: bool | str = False) -> None:
        if not (isinstance(flow_lr, (int, float)) and math.isfinite(flow_lr) and flow_lr > 0):
            raise ValueError(f"flow_lr must be a finite number > 0, got {flow_lr!r}")
        self.flow_lr = float(flow_lr)
        super().__init__(energy, eps, candidates, local_steps, FlowProposal(flow), compile)

    @property
    def flow(self) -> nn.Module | None:
        return self.kernel.proposal.flow

    def warmup_adapters(self, state: SamplerState, warmup: int = 0) -> list:
        return [FlowFit(self.kernel.proposal, self.flow_lr)]

    def run(self, z0: Tensor, steps: int = 1000, warmup: int = 0, *args: Any, **kwargs: Any):
        """See :meth:`Sampler.run`; the flow is fitted during the ``warmup`` steps, which must be >= 1."""
        if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup < 1:
            raise ValueError("FlEx2MCMC fits its flow during warm-up: warmup must be >= 1")
        return super().run(z0, steps, warmup, *args, **kwargs)
