"""Online convergence diagnostics during the recorded steps, and the rules that end a run early.

The monitor follows the energy and up to ``coordinates`` latent coordinates of up to ``chains`` chains (a
fixed subset: chains are exchangeable) through a bounded summary of their whole history, so that a check
costs the same at any run length and memory stays flat:

* **Batch sums.** Each monitored chain and quantity keeps the sums and sums of squares of consecutive
  batches of ``b`` draws, between :data:`BATCHES` and ``2 * BATCHES`` complete batches; when they reach
  ``2 * BATCHES`` neighbouring batches are merged and ``b`` doubles.  Sums merge exactly, so the summary
  holds the exact means and variances of every batch, of each half of the history and of the whole of it.
* **R-hat** is the split R-hat of the raw values (Gelman et al. 2013: the two halves of each chain as
  chains, ``sqrt(var+ / W)``) from the halves' exact means and variances: equal to
  ``rhat(draws, method="split")`` on the draws of the complete batches.  With superchains it is nested
  R-hat (Margossian et al. 2024) from the same moments.
* **ESS** is that of the mean of the raw values, ``ESS = m var+(X) / Var(chain mean)``.  With
  :data:`MANY_CHAINS` monitored chains or more, ``Var(chain mean)`` is the variance of the chains' means
  across chains (independent chains of one target: exact in expectation, with a relative error of about
  ``sqrt(2 / m)``; chains that have not forgotten their starts spread their means and lower it, as they
  should).  With fewer chains it comes from the batch means ``Y``: Geyer's initial monotone sequence on
  ``Y`` gives ``Var(mean)`` also when batches are shorter than the autocorrelation,
  ``ESS = ESS(Y) var+(X) / var+(Y)``, and with batches of one draw that is ``ess(draws, method="mean")``.

These are the raw-value statistics, not the rank-normalised ones of the final report (which ranks every
draw, a cost that grows with the run): for targets with heavy tails the report's bulk ESS and rank R-hat
can differ from the monitor's.  Checks come every ``check_every`` recorded steps for the first ten, then
each when the run has grown by a tenth (rounded up to a multiple of ``check_every``), so a run of ``n``
steps makes at most about ``10 + 24 log10(n / (10 check_every))`` checks (61 for 100,000 steps at 50).  With stop rules (:class:`Until`) the
recorded phase ends at the first check where every rule holds; the run reports which rule ended it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Until", "Monitor", "BATCHES"]

BATCHES = 32
"""Complete batches kept per chain: between this and twice this (the summary's size, whatever the run's length)."""

MANY_CHAINS = 64
"""From this many monitored chains on, the ESS reads the variance of the chain means across chains."""

_STEADY_CHECKS = 10  # checks at every check_every recorded steps, before they space out by a tenth of the run
_RING = 32  # recorded steps buffered before they are summed


@dataclass(frozen=True)
class Until:
    """Stop rules for the recorded phase: ``rhat`` (max split R-hat at most this) and ``min_ess`` (min ESS).

    Both are measured online on the energy and the monitored coordinates (:class:`Monitor`); a rule left
    None is not required.  With ``superchains`` (chains in that many consecutive groups that share their
    starting point) the R-hat is nested R-hat (Margossian et al. 2024) over the monitored whole
    superchains.  ``check_every`` recorded steps between the first checks (at least 8 draws are
    needed); ``steps`` of :meth:`~latentmcmc.samplers.Sampler.run` is the cap.  ``chains`` (monitored
    chains; the ESS is that of all the run's chains, scaled from theirs: chains are exchangeable) and
    ``coordinates`` bound the cost of a step and of a check.
    """

    rhat: float | None = None
    min_ess: float | None = None
    check_every: int = 50
    chains: int = 256
    coordinates: int = 16
    superchains: int | None = None  # consecutive groups of chains sharing a start: the rule uses nested R-hat

    def __post_init__(self) -> None:
        if self.rhat is None and self.min_ess is None:
            raise ValueError("Until needs rhat= or min_ess= (or both)")
        for name in ("rhat", "min_ess"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ValueError(f"until {name} must be a number, got {value!r}")
        if self.rhat is not None and not (self.rhat > 1.0 and math.isfinite(self.rhat)):
            raise ValueError(f"until rhat must be a finite number > 1, got {self.rhat}")
        if self.min_ess is not None and not (self.min_ess > 0 and math.isfinite(self.min_ess)):
            raise ValueError(f"until min_ess must be a finite number > 0, got {self.min_ess}")
        for name, least in (("check_every", 1), ("chains", 2 if self.rhat is not None else 1), ("coordinates", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"until {name} must be an integer >= {least}, got {value!r}")
        s = self.superchains
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 2):
            raise ValueError(f"until superchains must be an integer >= 2 (or None), got {s!r}")

    def describe(self) -> str:
        which = "nested R-hat" if self.superchains else "R-hat"
        parts = ([f"{which} <= {self.rhat:g}"] if self.rhat is not None else []) + (
            [f"ESS >= {self.min_ess:g}"] if self.min_ess is not None else [])
        return " and ".join(parts)


def _moments(total: Tensor, squares: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Means and unbiased variances from sums and sums of squares of ``count`` draws."""
    mean = total / count
    return mean, (squares - total * mean).clamp(min=0.0) / max(count - 1, 1)


def _split_rhat(mean: Tensor, var: Tensor, n: int) -> Tensor:
    """Gelman's R-hat of chains ``(chains, p)`` of ``n`` draws each, from their means and variances."""
    within = var.mean(0)
    between = mean.var(0, unbiased=True) * n
    var_plus = (n - 1) / n * within + between / n
    return torch.sqrt(var_plus / within)


def _nested_rhat(mean: Tensor, var: Tensor, groups: int) -> Tensor:
    """Nested R-hat of chains ``(chains, p)`` in ``groups`` consecutive superchains, from means and variances."""
    c, p = mean.shape
    size = c // groups
    mean, var = mean[: groups * size].reshape(groups, size, p), var[: groups * size].reshape(groups, size, p)
    between_chain = mean.var(1, unbiased=True) if size > 1 else torch.zeros(groups, p, dtype=mean.dtype)
    within_super = (var.mean(1) + between_chain).mean(0)
    between_super = mean.mean(1).var(0, unbiased=True)
    return torch.sqrt(1.0 + between_super / within_super)


class Monitor:
    """The monitored quantities' batch sums (see the module docstring), and the checks on them."""

    def __init__(self, state, steps: int, until: Until | None, check_every: int) -> None:
        self.until = until
        self.every = until.check_every if until is not None else check_every
        chains = state.z.shape[0]
        self.chains = chains
        if until is not None:
            if until.rhat is not None and chains < 2:
                raise ValueError("until rhat needs at least 2 chains (R-hat compares chains)")
            if until.superchains and chains % until.superchains:
                raise ValueError(f"until superchains={until.superchains} must divide the number of chains ({chains})")
            first = max(8, self.every)
            if first > steps:
                warnings.warn(f"no stop-rule check can happen: the first comes after {first} recorded steps and "
                              f"the run records at most {steps}", RuntimeWarning, stacklevel=2)
        self.m = min(chains, until.chains if until else 256)
        self.groups = None
        if until is not None and until.superchains:
            size = chains // until.superchains
            self.m = max(2 * size, self.m // size * size)  # whole superchains, at least two
            self.groups = self.m // size
        self.k = min(state.z[0].numel(), until.coordinates if until else 16)
        self.vector_latent = state.z.dim() == 2  # (chains, d): the first k coordinates are a slice
        # batches first: a check's sums over batches add contiguous (m, p) slabs (2x faster than over a middle axis)
        shape, like = (2 * BATCHES, self.m, self.k + 1), dict(dtype=torch.float64, device=state.z.device)
        self.sums, self.squares = torch.zeros(shape, **like), torch.zeros(shape, **like)
        self.partial, self.partial_sq = torch.zeros(self.m, self.k + 1, **like), torch.zeros(self.m, self.k + 1, **like)
        # each step's monitored energies and coordinates are copied at once (in their own dtype) into buffers
        # kept for the monitor's life, and summed 32 steps at a time in float64 rows; holding references to
        # the steps' tensors instead cost more (5.6% of a 0.2 ms step: their memory could not be reused warm)
        self.energies = torch.empty((_RING, self.m), dtype=state.energy.dtype, device=state.z.device)
        self.coordinates = torch.empty((_RING, self.m, self.k), dtype=state.z.dtype, device=state.z.device)
        self.rows = torch.empty((_RING, self.m, self.k + 1), **like)
        self.squared = torch.empty_like(self.rows)
        # one view per buffered step: an eager step's copy indexes no buffer (4.8 us a step instead of 7.3, measured)
        self.energy_slots, self.coordinate_slots = self.energies.unbind(0), self.coordinates.unbind(0)
        self.filled = 0  # buffered steps not yet summed
        self.ref: Tensor | None = None  # the first recorded values: sums are of differences (no cancellation)
        self.batch = 1  # draws per batch
        self.batches = 0  # complete batches held
        self.in_partial = 0
        self.count = 0  # recorded steps seen
        self.checks = 0
        self.next_check = self.every
        self.last: tuple[float, float] | None = None  # (max R-hat, min ESS) at the last check
        self.history: list[tuple[int, float, float]] = []  # (recorded steps, max R-hat, min ESS) of every check
        self.stopped_by: str | None = None

    def record_block(self, block) -> None:
        """Take ``k`` recorded steps (one, or a fused block): the energy ``(k, chains)`` and states ``(k, chains, ...)``."""
        k, m, done = block.energy.shape[0], self.m, 0
        self.count += k
        if k == 1:  # an eager step, the per-step path: one slot, no loop
            slot = self.filled
            self.energy_slots[slot].copy_(block.energy[0, :m])
            if self.vector_latent:
                self.coordinate_slots[slot].copy_(block.z[0, :m, :self.k])
            else:
                self.coordinate_slots[slot].copy_(block.z[0, :m].reshape(m, -1)[:, :self.k])
            self.filled = slot + 1
            if self.filled == _RING:
                self._flush()
            return
        while done < k:
            n = min(k - done, _RING - self.filled)
            self.energies[self.filled:self.filled + n].copy_(block.energy[done:done + n, :m])
            self.coordinates[self.filled:self.filled + n].copy_(block.z[done:done + n, :m].reshape(n, m, -1)[:, :, :self.k])
            self.filled += n
            done += n
            if self.filled == _RING:
                self._flush()

    def _flush(self) -> None:
        """Add the rows not yet summed to the batch sums (whole batches at once), closing batches as they fill."""
        if not self.filled:
            return
        rows = self.rows[:self.filled]
        rows[:, :, 0] = self.energies[:self.filled]
        rows[:, :, 1:] = self.coordinates[:self.filled]
        if self.ref is None:
            self.ref = rows[0].clone()
        rows -= self.ref  # differences to the first values: small sums, no cancellation
        squares = torch.mul(rows, rows, out=self.squared[:self.filled])
        self.filled = 0
        done, total, b = 0, rows.shape[0], self.batch
        while done < total:
            full = min((total - done) // b, 2 * BATCHES - self.batches) if self.in_partial == 0 else 0
            if full:  # whole batches at once
                chunk = rows[done:done + full * b].reshape(full, b, *rows.shape[1:])
                self.sums[self.batches:self.batches + full] = chunk.sum(1)
                self.squares[self.batches:self.batches + full] = (
                    squares[done:done + full * b].reshape(full, b, *rows.shape[1:]).sum(1))
                self.batches += full
                done += full * b
                self._merge_if_full()
                b = self.batch
                continue
            n = min(total - done, b - self.in_partial)
            chunk = rows[done:done + n]
            self.partial += chunk.sum(0)
            self.partial_sq += squares[done:done + n].sum(0)
            self.in_partial += n
            done += n
            if self.in_partial == b:
                self._close_batch()
                b = self.batch

    def _close_batch(self) -> None:
        self.sums[self.batches] = self.partial
        self.squares[self.batches] = self.partial_sq
        self.partial.zero_()
        self.partial_sq.zero_()
        self.in_partial = 0
        self.batches += 1
        self._merge_if_full()

    def _merge_if_full(self) -> None:
        if self.batches == 2 * BATCHES:  # merge neighbours: half as many batches, twice as long
            for t in (self.sums, self.squares):  # batches past self.batches are never read: no need to clear them
                t[:BATCHES] = t[0::2] + t[1::2]  # (a new tensor: the halves overlap the target)
            self.batches = BATCHES
            self.batch *= 2

    def due(self) -> bool:
        return self.count >= 8 and self.count >= self.next_check

    def _schedule_next(self) -> None:
        self.checks += 1
        if self.checks < _STEADY_CHECKS:
            self.next_check = self.count + self.every
        else:  # then whenever the run has grown by a tenth, on a multiple of check_every
            self.next_check = max(self.count + self.every,
                                  math.ceil(self.count * 1.1 / self.every) * self.every)

    def statistics(self) -> tuple[Tensor, Tensor] | None:
        """``(R-hat, ESS)`` of each monitored quantity over the complete batches, or None with fewer than four."""
        self._flush()
        nb = self.batches
        if nb < 4:
            return None
        b = self.batch
        ref = self.ref  # the sums are of differences to it: it shifts each chain's means only

        h = nb // 2  # split R-hat: the first and last h batches of each chain (the middle one dropped if nb is odd)
        # the halves' sums side by side, (2, m, p); the whole history's sums are theirs (and the middle batch's)
        total = torch.stack((self.sums[:h].sum(0), self.sums[nb - h:nb].sum(0)))
        squares = torch.stack((self.squares[:h].sum(0), self.squares[nb - h:nb].sum(0)))
        whole_total, whole_squares = total.sum(0), squares.sum(0)
        if nb % 2:
            whole_total, whole_squares = whole_total + self.sums[h], whole_squares + self.squares[h]
        mean, var = _moments(total.reshape(2 * self.m, -1), squares.reshape(2 * self.m, -1), h * b)
        mean = mean + ref.repeat(2, 1)  # the halves as chains: (2m, p)
        whole_mean, whole_var = _moments(whole_total, whole_squares, nb * b)
        if self.groups is not None:  # halves of a chain stay in its superchain
            size = self.m // self.groups
            order = torch.arange(2 * self.m, device=mean.device).reshape(2, self.groups, size).permute(1, 0, 2)
            r = _nested_rhat(mean[order.reshape(-1)], var[order.reshape(-1)], self.groups)
        else:
            r = _split_rhat(mean, var, h * b) if self.m * 2 > 1 else torch.full_like(mean[0], float("nan"))
        return r, self._ess((whole_mean + ref, whole_var), ref, nb, b)

    def _ess(self, whole: tuple[Tensor, Tensor], ref: Tensor, nb: int, b: int) -> Tensor:
        from ..diagnostics.convergence import ess_core

        n = nb * b
        mean_x, var_x = whole  # (m, p) over every complete batch
        between = mean_x.var(0, unbiased=True) if self.m > 1 else 0.0
        var_plus_x = (n - 1) / n * var_x.mean(0) + between
        scale = self.chains / self.m  # all the run's chains, from the monitored ones (exchangeable)
        if self.m >= MANY_CHAINS:  # Var(chain mean) from the spread of the chain means across chains
            return scale * self.m * var_plus_x / between
        y = (self.sums[:nb] / b + ref).permute(2, 1, 0)  # batch means (p, m, nb)
        ess_y = ess_core(y)
        var_y = y.var(-1, unbiased=True).mean(1)
        var_plus_y = (nb - 1) / nb * var_y + (y.mean(-1).var(1, unbiased=True) if self.m > 1 else 0.0)
        return scale * (ess_y if b == 1 else ess_y * var_plus_x / var_plus_y)

    def check(self) -> bool:
        """Compute the diagnostics of the run so far; True when every stop rule holds."""
        self._schedule_next()
        stats = self.statistics()
        if stats is None:
            return False
        r, ess = stats
        worst_rhat = float(torch.nan_to_num(r, nan=float("inf")).max()) if self.m > 1 else float("nan")
        least_ess = float(torch.nan_to_num(ess, nan=0.0).min())
        self.last = (worst_rhat, least_ess)
        self.history.append((self.count, worst_rhat, least_ess))
        u = self.until
        if u is None:
            return False
        ok = (u.rhat is None or worst_rhat <= u.rhat) and (u.min_ess is None or least_ess >= u.min_ess)
        if ok:
            which = "nested R-hat" if self.groups is not None else "R-hat"
            self.stopped_by = (f"until {u.describe()}: {which} {worst_rhat:.4f}, ESS {least_ess:.0f} after "
                               f"{self.count} recorded steps")
        return ok

    _FIELDS = ("batch", "batches", "in_partial", "count", "checks", "next_check")

    def state_dict(self) -> dict:
        self._flush()
        # saved chains first, (m, 2 BATCHES, p), as before the batches-first layout: saved runs resume either way
        return {"sums": self.sums.transpose(0, 1).clone(), "squares": self.squares.transpose(0, 1).clone(),
                "partial": self.partial.clone(),
                "ref": None if self.ref is None else self.ref.clone(),
                "partial_sq": self.partial_sq.clone(), "last": self.last, "history": list(self.history),
                **{name: getattr(self, name) for name in self._FIELDS}}

    def load_state_dict(self, d: dict) -> None:
        for name in ("sums", "squares"):
            getattr(self, name).copy_(d[name].to(self.sums.device).transpose(0, 1))
        for name in ("partial", "partial_sq"):
            getattr(self, name).copy_(d[name].to(self.sums.device))
        for name in self._FIELDS:
            setattr(self, name, int(d[name]))
        self.ref = None if d.get("ref") is None else d["ref"].to(self.sums.device, torch.float64)
        self.filled = 0
        self.last = tuple(d["last"]) if d["last"] is not None else None
        self.history = [tuple(h) for h in d.get("history", [])]
