"""Storage of a run's draws: full, thinned, or the last state only; on the chains' device or streamed to host."""

from __future__ import annotations

import torch
from torch import Tensor

from .kernel import SamplerState, acceptance_probability

__all__ = ["RECORD_CHOICES", "PhaseRecorder"]

RECORD_CHOICES = {
    "full": "keep every (thinned) draw",
    "last": "keep only the final states (no ESS or R-hat; for big runs)",
}
"""What a run records (``run(record=)``, ``RefineOptions.record``, ``--record``): name -> summary."""


class PhaseRecorder:
    """Records one phase (warm-up or sampling) of a run.

    Every ``thin``-th state is written into preallocated tensors (``store=True``); running sums of
    the acceptance probability, the would-be MH acceptance and divergences cover every step, so
    rates stay exact under thinning or with nothing stored.  Nothing here reads values back to the
    host.

    ``stream=k`` keeps the stored draws in host memory instead (pinned when the chains are on a
    GPU): they are written into a device buffer of ``k`` kept draws, which is copied to the host
    asynchronously each time it fills.  The copy is queued on the same CUDA stream as the sampler's
    kernels, so the buffer is not overwritten before it has been read; :meth:`flush` copies what is
    left and waits for the copies, after which the host tensors are complete.
    """

    def __init__(self, state: SamplerState, steps: int, thin: int, store: bool, store_eps: bool,
                 track_mh: bool = False, stream: int | None = None) -> None:
        z = state.z
        chains = z.shape[0]
        self.thin = thin
        n = steps // thin if store else 0
        on_host = stream is not None and n > 0
        where = dict(device="cpu", pin_memory=z.is_cuda) if on_host else dict(device=z.device)
        per_draw = {  # name -> (trailing shape, dtype)
            "draws": (tuple(z.shape[1:]), z.dtype),
            "energy": ((), state.energy.dtype),
            "accept_prob": ((), state.energy.dtype),
            "diverging": ((), torch.bool),
        }
        if store_eps:
            per_draw["eps"] = ((), state.energy.dtype)
        self._stored = {name: torch.empty((chains, n) + shape, dtype=dtype, **where)
                        for name, (shape, dtype) in per_draw.items()}
        self._chunk = min(stream, n) if on_host else 0
        self._buffer = {name: torch.empty((chains, self._chunk) + shape, dtype=dtype, device=z.device)
                        for name, (shape, dtype) in per_draw.items()} if on_host else None
        self._device = z.device
        self._flushed = 0  # kept draws already copied to the host
        self._kept = 0
        self.accept_sum = torch.zeros_like(state.energy)
        self.mh_accept_sum = torch.zeros_like(state.energy) if track_mh else None
        self.divergences = torch.zeros(chains, dtype=torch.int64, device=z.device)
        self.last_accept_prob = torch.ones_like(state.energy)
        self.jump_sum: Tensor | None = None  # created by the first step of a global kernel (StepInfo.jump_prob)
        self.count = 0  # steps recorded so far (fewer than ``steps`` after an interruption)

    draws = property(lambda self: self._stored["draws"])
    energy = property(lambda self: self._stored["energy"])
    accept_prob = property(lambda self: self._stored["accept_prob"])
    diverging = property(lambda self: self._stored["diverging"])
    eps = property(lambda self: self._stored.get("eps"))
    stores = property(lambda self: self._stored["draws"].shape[1] > 0, doc="whether states are kept (not only sums)")

    def record_block(self, i: int, block) -> None:
        """Record ``k`` consecutive steps, ``i .. i + k - 1``: a :class:`~.block.BlockOutput` (one step or a fused block).

        ``block`` has ``(k, chains)`` ``energy``, ``accept_prob``, ``diverging``, ``log_accept_ratio``,
        ``eps`` and optionally ``jump_prob``, and (when states are kept) ``z`` ``(k, chains, ...)``.
        """
        k = block.accept_prob.shape[0]
        self.count += k
        self.accept_sum += block.accept_prob.sum(0)
        if self.mh_accept_sum is not None:  # unadjusted Langevin: the acceptance MALA would have had
            self.mh_accept_sum += acceptance_probability(block.log_accept_ratio).sum(0)
        self.divergences += block.diverging.sum(0)
        self.last_accept_prob = block.accept_prob[-1]
        if block.jump_prob is not None:
            jumps = block.jump_prob.sum(0)
            self.jump_sum = jumps if self.jump_sum is None else self.jump_sum + jumps
        kept = [j for j in range(k) if (i + j + 1) % self.thin == 0][: self.draws.shape[1] - self._kept]
        if not kept:
            return
        rows = torch.tensor(kept, device=self._device) if len(kept) < k else slice(None)
        values = {"draws": block.z, "energy": block.energy, "accept_prob": block.accept_prob,
                  "diverging": block.diverging, "eps": block.eps}
        values = {name: values[name][rows].transpose(0, 1) for name in self._stored}  # (chains, kept, ...)
        done = 0
        while done < len(kept):  # into the store, or (streaming) into the buffer, copied to the host when full
            slots = self._stored if self._buffer is None else self._buffer
            at = self._kept - self._flushed
            n = len(kept) - done if self._buffer is None else min(len(kept) - done, self._chunk - at)
            for name, slot in slots.items():
                slot[:, at:at + n] = values[name][:, done:done + n]
            self._kept += n
            done += n
            if self._buffer is not None and self._kept - self._flushed == self._chunk:
                self._copy_to_host()

    def _copy_to_host(self) -> None:
        k = self._kept - self._flushed
        if k:
            for name, buffer in self._buffer.items():
                self._stored[name][:, self._flushed:self._kept].copy_(buffer[:, :k], non_blocking=True)
            self._flushed = self._kept

    def flush(self) -> None:
        """Copy the draws still in the device buffer to the host and wait until every copy has landed."""
        if self._buffer is None:
            return
        self._copy_to_host()
        if self._device.type == "cuda":
            torch.cuda.current_stream(self._device).synchronize()

    _SUMS = ("accept_sum", "mh_accept_sum", "divergences", "last_accept_prob", "jump_sum")

    def state_dict(self) -> dict:
        """What was recorded so far (kept draws only) and the running sums; call after :meth:`flush`."""
        return {"kept": self._kept, "count": self.count, "flushed": self._flushed,
                "stored": {name: t[:, : self._kept].clone() for name, t in self._stored.items()},
                "sums": {name: getattr(self, name) for name in self._SUMS}}

    def load_state_dict(self, d: dict) -> None:
        self._kept, self.count = int(d["kept"]), int(d["count"])
        self._flushed = self._kept if self._buffer is not None else 0
        for name, t in d["stored"].items():
            self._stored[name][:, : self._kept] = t.to(self._stored[name].device)
        for name, value in d["sums"].items():
            setattr(self, name, None if value is None else value.to(self._device))

    def rate(self, total: Tensor) -> Tensor:
        """Per-step mean of a running sum over the steps recorded so far."""
        return total / max(self.count, 1)
