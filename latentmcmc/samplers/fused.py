"""Fused blocks: ``K`` steps of a kernel compiled as one graph.

A kernel's step is a pure function of ``(state, eps, noise)`` (:mod:`.kernel`), so ``K`` of them in a
row can be handed to ``torch.compile`` as one function: the forward pass, the backward pass and the
proposal/accept arithmetic of all ``K`` steps become one graph (fewer, fused kernels; no Python or
autograd bookkeeping per step; on CUDA, one CUDA-graph replay with ``mode="reduce-overhead"``).

What is compiled is the driver's one step path, :func:`~.block.run_steps`, for ``K`` steps instead of
one: the driver draws the ``K`` steps' noise from the run's generator in the order an eager run draws
it, passes it in, and reads the block's per-step outputs (energies, acceptance, divergences, and the
states when they are recorded or monitored) with the same bookkeeping as an eager step.  During
warm-up the dual-averaging update of eps (:func:`~.adaptation.dual_averaging_step`, a pure function)
runs inside the graph after every step, so each step uses the eps an eager run would.  A fused run
therefore draws the same random numbers and makes the same decisions as an eager run, and its states
equal the eager run's to floating-point rounding (compiled arithmetic may round differently; a
rounding difference can flip an accept decision that sat on the boundary, after which that chain
follows another path of the same chain).

Inside a block the gradient comes from ``torch.func.grad_and_value`` (autograd's tape cannot be
traced into one graph); chains must be independent, which :class:`~latentmcmc.energy.Target` checks
at the start of every run.
"""

from __future__ import annotations

import itertools
import types
from typing import Any, Callable

import torch
from torch import Tensor

from ..energy import LatentEnergy, Target
from .adaptation import StepSizeAdapter
from .block import Adaptation, BlockOutput, run_steps
from .kernel import SamplerState

__all__ = ["FUSE_CHOICES", "DEFAULT_BLOCK", "AUTO_MIN_STEPS_CUDA", "FusedBlock", "BlockOutput", "functional_target", "resolve_fuse",
           "parse_fuse", "auto_fuses", "fusable", "step_flops"]

_SERIAL = itertools.count()

DEFAULT_BLOCK = 10
"""Steps per compiled call when ``fuse=True``: long enough to amortise the call, short enough to adapt often."""

FUSE_CHOICES = ("auto", "off", "on")
"""``--fuse`` values: auto (fused when the rule of :func:`auto_fuses` says so), off (step by step), on."""

AUTO_MIN_STEPS = 400
"""``fuse="auto"`` fuses runs of at least this many steps (warm-up included) ..."""

AUTO_MIN_CHAIN_STEPS = 20_000_000
"""... with at least this many chain-steps (chains x steps) ..."""

AUTO_MIN_FLOPS = 5e13
"""... or at least this many floating-point operations (chain-steps x the model's forward+backward FLOPs).

Measured here (2-core CPU): compiling a block costs 10-14 s for a small MLP and 35 s for a DCGAN-size
pair, and saves about 0.45 us per chain-step on the MLP (74 kFLOP a step: break-even near 30 million
chain-steps) and 0.19 ms on the DCGAN pair (350 MFLOP: break-even near 180,000 chain-steps, 6e13
FLOPs).  CUDA has its own rule (:data:`AUTO_MIN_STEPS_CUDA`)."""

AUTO_MIN_STEPS_CUDA = 20_000
"""On CUDA, ``fuse="auto"`` fuses runs of at least this many steps (warm-up included), whatever the chains.

Measured on an H200 (torch 2.11, ``benchmarks/sampler_throughput.py``): an eager step costs about 2.2 ms
for the MLP at 1,024 and at 65,536 chains alike (kernel launches and Python, not arithmetic), a fused
step 0.17-0.5 ms, and compiling a block 12-15 s: break-even near 7,500 steps at any chain count.  The
DCGAN-size pair saves 0.9 ms a step at 1,024 chains (compiling 33 s: 37,000 steps) and 3 ms at 8,192
(23 s: 7,700 steps).  So on a GPU the number of steps decides, not chain-steps or FLOPs."""


def resolve_fuse(fuse: bool | int | str) -> int | str | None:
    """``fuse`` as a block length (int >= 2), ``"auto"`` or None (off); a ValueError naming a bad value."""
    if fuse is False or fuse == "off" or fuse is None:
        return None
    if fuse is True or fuse == "on":
        return DEFAULT_BLOCK
    if fuse == "auto":
        return "auto"
    if isinstance(fuse, int) and not isinstance(fuse, bool) and fuse >= 2:
        return fuse
    raise ValueError(f"fuse must be 'auto', True/'on', False/'off' or a block length >= 2, got {fuse!r}")


def parse_fuse(text: str | int | bool) -> int | str | bool:
    """The command line's ``--fuse``: one of :data:`FUSE_CHOICES` or a block length >= 2 (a ValueError otherwise)."""
    if not isinstance(text, str) or text in FUSE_CHOICES:
        return text
    try:
        block = int(text)
    except ValueError:
        block = 0
    if block < 2:
        raise ValueError(f"must be one of {', '.join(FUSE_CHOICES)} or a block length >= 2, got {text!r}")
    return block


def step_flops(target: Target, z: Tensor) -> float:
    """Forward+backward FLOPs of one chain-step of ``target`` (twice its forward's, counted on one chain); 0 if uncountable."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            target(z[:1])
        return 2.0 * counter.get_total_flops()
    except Exception:  # noqa: BLE001 - an operator the counter does not know: fall back to the chain-steps rule
        return 0.0


def auto_fuses(chains: int, total_steps: int, device: torch.device, flops: float = 0.0) -> bool:
    """The rule of ``fuse="auto"``: fuse when the run is long and large enough to repay compiling.

    On a CPU: at least :data:`AUTO_MIN_STEPS` steps and :data:`AUTO_MIN_CHAIN_STEPS` chain-steps or
    :data:`AUTO_MIN_FLOPS`; on CUDA: at least :data:`AUTO_MIN_STEPS_CUDA` steps.
    ``flops``: the model's FLOPs per chain-step (:func:`step_flops`).  Decided from the run's sizes and
    the model's operation count, never from timings, so the same call always takes the same path and
    the same seed gives the same draws.
    """
    if device.type == "cuda":
        return total_steps >= AUTO_MIN_STEPS_CUDA
    chain_steps = chains * total_steps
    return total_steps >= AUTO_MIN_STEPS and (chain_steps >= AUTO_MIN_CHAIN_STEPS
                                             or chain_steps * flops >= AUTO_MIN_FLOPS)


def _functional_value_and_grad(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``z -> (E(z), grad E(z))`` by ``torch.func.grad_and_value`` of the summed energies (chains are independent)."""

    def summed(z: Tensor) -> tuple[Tensor, Tensor]:
        energy = fn(z)
        return energy.sum(), energy

    grad_and_value = torch.func.grad_and_value(summed, has_aux=True)

    def value_and_grad(z: Tensor) -> tuple[Tensor, Tensor]:
        grad, (_, energy) = grad_and_value(z)
        return energy, grad

    return value_and_grad


def functional_target(target: Target) -> Target:
    """The same target with a gradient ``torch.compile`` can trace into one graph (``torch.func``).

    A target that brings its own ``value_and_grad`` (other than a :class:`LatentEnergy`'s autograd
    one) keeps it: it must then be traceable itself.
    """
    if target._value_and_grad is not None and not isinstance(target.fn, LatentEnergy):
        return target
    return Target(target.fn, _functional_value_and_grad(target.fn), target.prior)


class FusedBlock:
    """``K`` steps of ``kernel`` on ``target`` as one ``torch.compile``-d call of :func:`~.block.run_steps`.

    With an adapter (warm-up), each step's dual-averaging update runs inside the graph too, so every
    step uses the eps an eager run would use.  ``mode`` is the ``torch.compile`` mode
    (``"reduce-overhead"``: a CUDA graph per block on a GPU).  One compiled function per block length,
    freezing, kept states and adapter constants is built on first use and reused (a cache of compiled
    code: it holds no state of any run).
    """

    def __init__(self, kernel, target: Target, mode: str = "default") -> None:
        self.kernel, self.mode = kernel, mode
        self.target = functional_target(target)
        self._compiled: dict[tuple, Callable] = {}
        self.on_compile: Callable[[], None] | None = None  # told before a call that compiles (the progress bar)
        self.cudagraphs = mode in ("reduce-overhead", "max-autotune")

    def _function(self, freeze: bool, keep_states: bool, constants: tuple | None) -> Callable:
        kernel, target = self.kernel, self.target

        def block(state: SamplerState, params, noises: list, adaptation: Adaptation | None,
                  log_weights: Tensor | None) -> BlockOutput:
            if constants is not None:  # the constants are fixed in the graph; the state and centre are inputs
                adaptation = Adaptation(*constants[:5], adaptation.prox_center, adaptation.state)
            return run_steps(kernel, target, state, params, noises, freeze=freeze, keep_states=keep_states,
                             adaptation=adaptation, log_weights=log_weights)

        # torch.compile caches by code object: a fresh copy per block keeps each sampler's (and each
        # variant's) graphs apart instead of piling them onto one function's recompile limit
        fresh = types.FunctionType(block.__code__.replace(co_name=f"fused_block_{next(_SERIAL)}"), block.__globals__,
                                   None, block.__defaults__, block.__closure__)
        return torch.compile(fresh, mode=self.mode, fullgraph=True, dynamic=False)

    def __call__(self, state: SamplerState, params, noises: list, freeze: bool, keep_states: bool,
                 adapter: StepSizeAdapter | None = None, log_weights: Tensor | None = None) -> BlockOutput:
        """``len(noises)`` steps as :func:`~.block.run_steps` would run them (at the target: no annealing levels)."""
        constants = None if adapter is None else adapter.constants
        key = (len(noises), freeze, keep_states, constants, log_weights is None)
        fn = self._compiled.get(key)
        if fn is None:  # torch.compile compiles at the first call, below
            fn = self._compiled[key] = self._function(freeze, keep_states, constants)
            if self.on_compile is not None:
                self.on_compile()
        params = params._replace(eps=params.eps.contiguous())  # one graph whether eps is shared (expanded) or not
        adaptation = None
        if adapter is not None:  # the step count as a tensor: one graph for every block of the warm-up
            adaptation = Adaptation.of(adapter)
            adaptation = adaptation._replace(state=adapter.state._replace(
                t=torch.tensor(float(adapter.state.t), dtype=torch.float64, device=params.eps.device)))
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            out = fn(state, params, noises, adaptation, log_weights)
            # a CUDA graph reuses its output memory at the next replay, which takes this state as input
            out = torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, Tensor) else t, out)
        else:
            out = fn(state, params, noises, adaptation, log_weights)
        if adapter is not None:  # the count stays a Python int outside the graph (no read-back)
            out = out._replace(adaptation=out.adaptation._replace(t=adapter.state.t + len(noises)))
        return out


def fusable(kernel) -> bool:
    """Whether ``kernel`` can run as fused blocks: its ``fusable`` flag (False when it has none)."""
    return bool(getattr(kernel, "fusable", False))


def noise_is_static(noises: list[Any]) -> bool:
    """True when the non-tensor parts of every step's noise agree (e.g. HMC's leapfrog steps), so one graph fits all."""
    leaves = [[leaf for leaf in torch.utils._pytree.tree_leaves(n) if not isinstance(leaf, Tensor)] for n in noises]
    return all(x == leaves[0] for x in leaves[1:])
