"""Online convergence diagnostics during the recorded steps, and the rules that end a run early.

Every ``check_every`` recorded steps the monitor computes rank R-hat and bulk ESS (Vehtari et al.
2021) of the energy and of up to ``coordinates`` latent coordinates over the draws so far, on the
chains' device, for up to ``chains`` chains (a fixed subset: chains are exchangeable), so a check
costs a bounded amount however large the run.  With stop rules (:class:`Until`) the recorded phase
ends at the first check where every rule holds; the run reports which rule ended it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Until", "Monitor"]


@dataclass(frozen=True)
class Until:
    """Stop rules for the recorded phase: ``rhat`` (max rank R-hat at most this) and ``min_ess`` (min bulk ESS).

    Both are measured on the energy and the monitored coordinates; a rule left None is not required.
    With ``superchains`` (chains in that many consecutive groups that share their starting point) the
    R-hat is nested R-hat (Margossian et al. 2024) over the monitored whole superchains.
    ``check_every`` recorded steps between checks (at least 8 draws are needed); ``steps`` of
    :meth:`~latentmcmc.samplers.Sampler.run` is the cap.  ``chains`` and ``coordinates`` bound the
    cost of a check.
    """

    rhat: float | None = None
    min_ess: float | None = None
    check_every: int = 50
    chains: int = 4096
    coordinates: int = 16
    superchains: int | None = None  # consecutive groups of chains sharing a start: the rule uses nested R-hat

    def __post_init__(self) -> None:
        if self.rhat is None and self.min_ess is None:
            raise ValueError("Until needs rhat= or min_ess= (or both)")
        if self.rhat is not None and not (self.rhat > 1.0 and math.isfinite(self.rhat)):
            raise ValueError(f"until rhat must be a finite number > 1, got {self.rhat}")
        if self.min_ess is not None and not (self.min_ess > 0 and math.isfinite(self.min_ess)):
            raise ValueError(f"until min_ess must be a finite number > 0, got {self.min_ess}")
        for name in ("check_every", "chains", "coordinates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"until {name} must be an integer >= 1, got {value!r}")

    def describe(self) -> str:
        which = "nested R-hat" if self.superchains else "R-hat"
        parts = ([f"{which} <= {self.rhat:g}"] if self.rhat is not None else []) + (
            [f"ESS >= {self.min_ess:g}"] if self.min_ess is not None else [])
        return " and ".join(parts)


class Monitor:
    """Keeps the monitored draws (energy + a few coordinates of a subset of chains) and checks them."""

    def __init__(self, state, steps: int, until: Until | None, check_every: int) -> None:
        self.until = until
        self.every = until.check_every if until is not None else check_every
        chains = state.z.shape[0]
        self.m = min(chains, until.chains if until else 4096)
        self.groups = None
        if until is not None and until.superchains:
            size = chains // until.superchains
            self.m = max(2 * size, self.m // size * size)  # whole superchains, at least two
            self.groups = self.m // size
        k = min(state.z[0].numel(), until.coordinates if until else 16)
        self.k = k
        self.buffer = torch.empty((self.m, steps, k + 1), dtype=state.energy.dtype, device=state.z.device)
        self.count = 0
        self.last: tuple[float, float] | None = None  # (max R-hat, min bulk ESS) at the last check
        self.stopped_by: str | None = None

    def record_block(self, block) -> None:
        """Record ``k`` steps (one, or a fused block) from a block's stacked ``energy`` ``(k, chains)`` and ``z``."""
        k = block.energy.shape[0]
        rows = torch.cat([block.energy[:, : self.m, None],
                          block.z[:, : self.m].reshape(k, self.m, -1)[:, :, : self.k]], 2)
        self.buffer[:, self.count:self.count + k] = rows.transpose(0, 1)
        self.count += k

    def due(self) -> bool:
        return self.count >= 8 and self.count % self.every == 0

    def check(self) -> bool:
        """Compute the diagnostics of the draws so far; True when every stop rule holds."""
        import warnings

        from ..diagnostics.convergence import ess_rhat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bulk, _, r = ess_rhat(self.buffer[:, : self.count])
            if self.groups is not None:
                from ..diagnostics.convergence import rhat_nested

                r = rhat_nested(self.buffer[:, : self.count], self.groups)
        worst_rhat = float(torch.nan_to_num(r, nan=float("inf")).max()) if self.m > 1 else float("nan")
        least_ess = float(torch.nan_to_num(bulk, nan=0.0).min())
        self.last = (worst_rhat, least_ess)
        u = self.until
        if u is None:
            return False
        ok = (u.rhat is None or worst_rhat <= u.rhat) and (u.min_ess is None or least_ess >= u.min_ess)
        if ok:
            which = "nested R-hat" if self.groups is not None else "R-hat"
            self.stopped_by = (f"until {u.describe()}: {which} {worst_rhat:.4f}, ESS {least_ess:.0f} after "
                               f"{self.count} recorded steps")
        return ok

    def state_dict(self) -> dict:
        return {"buffer": self.buffer[:, : self.count].clone(), "count": self.count, "last": self.last}

    def load_state_dict(self, d: dict) -> None:
        self.count = int(d["count"])
        self.buffer[:, : self.count] = d["buffer"].to(self.buffer.device)
        self.last = tuple(d["last"]) if d["last"] is not None else None
