"""ESS, R-hat and MCSE (Vehtari et al. 2021), batched over parameters in torch on the draws' device.

Input ``x`` has shape ``(chains, draws, *shape)``; results have shape ``shape`` (a 0-d tensor for
``(chains, draws)``), in float64 on ``x``'s device.  The arithmetic follows ArviZ 0.23 step for step
(split chains, Blom rank normalisation, FFT autocovariance, Geyer's initial positive and monotone
sequences) so that results agree with it to rounding.  Parameters are processed in chunks so that
temporaries stay near ``CHUNK_VALUES`` numbers and memory grows linearly with the input.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Literal, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["ess", "rhat", "mcse", "rhat_nested", "superchain_ids", "ess_rhat", "ESS_METHODS", "RHAT_METHODS"]

CHUNK_VALUES = 2_000_000
_RESOLUTION = 1e-15  # numpy's float64 resolution: ArviZ's test for a constant array
_BLOM = 3.0 / 8.0


# --------------------------------------------------------------------------- layout
def _as_params(x) -> tuple[Tensor, tuple[int, ...]]:
    """``(chains, draws, *shape)`` -> float64 ``(params, chains, draws)`` and ``shape``."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.dim() < 2:
        raise ValueError(f"draws must have shape (chains, draws, *shape), got shape {tuple(x.shape)}")
    shape = tuple(x.shape[2:])
    if x.numel() == 0:
        raise ValueError(f"draws must have at least one chain, draw and parameter, got shape {tuple(x.shape)}")
    flat = x.detach().to(torch.float64).reshape(x.shape[0], x.shape[1], -1)
    return flat.permute(2, 0, 1), shape


def _chunked(fn: Callable[[Tensor], Tensor], params: Tensor) -> Tensor:
    """Apply ``fn`` to contiguous chunks of about ``CHUNK_VALUES`` numbers of ``(p, chains, draws)``.

    On the CPU the chunks run on up to ``torch.get_num_threads()`` worker threads at once (torch and
    numpy release the GIL; many of the steps, the sorts, cumulative sums and gathers, use one core
    each): 1.3x faster on 2 cores than one chunk after another, measured.  Each chunk is computed as
    alone, so the results are the same bit for bit.
    """
    p, c, d = params.shape
    step = max(1, CHUNK_VALUES // max(c * d, 1))
    chunks = [params[i : i + step] for i in range(0, p, step)]
    workers = min(torch.get_num_threads(), len(chunks)) if params.device.type == "cpu" else 1
    if workers < 2 or _in_worker():
        return torch.cat([fn(chunk) for chunk in chunks])  # functions copy what they reorder
    return torch.cat(list(_pool(workers).map(fn, chunks)))


_POOL: tuple = (None, 0)  # (executor, the process id that made it)
_WORKER_PREFIX = "latentmcmc-diagnostics"


def _pool(workers: int):
    """The process's thread pool, grown to ``workers`` threads when it has fewer (a forked child makes its own)."""
    global _POOL
    pool, pid = _POOL
    if pool is None or pid != os.getpid() or pool._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix=_WORKER_PREFIX)
        _POOL = (pool, os.getpid())
    return pool


def _in_worker() -> bool:
    """Whether this thread is one of the pool's (its work is not split again: the pool would wait on itself)."""
    import threading

    return threading.current_thread().name.startswith(_WORKER_PREFIX)


def _valid(params: Tensor, min_chains: int, stacklevel: int) -> Tensor | None:
    """Per-parameter validity mask, or None (after a warning) when the shape is too small.

    ``stacklevel`` counts frames from here to the user's call, so warnings name the user's line.
    """
    _, c, d = params.shape
    if c < min_chains or d < 4:
        warnings.warn(
            f"too few {'chains' if c < min_chains else 'draws'} for this diagnostic: got (chains={c}, draws={d}), need at least "
            f"(chains={min_chains}, draws=4); returning NaN",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        return None
    finite = torch.isfinite(params.sum((1, 2)))  # one pass; a NaN makes the sum NaN
    if not bool(finite.all()):  # NaN or infinite sums: tell NaN draws (invalid) from infinite ones (valid)
        finite[~finite] = ~torch.isnan(params[~finite]).flatten(1).any(1)
    if not bool(finite.all()):
        warnings.warn("draws contain NaN; the diagnostic is NaN for those parameters", RuntimeWarning, stacklevel=stacklevel)
    return finite


def apply_valid(params: Tensor, fn: Callable[[Tensor], Tensor], min_chains: int, columns: int | None = None,
                stacklevel: int = 5) -> Tensor:
    """``fn`` over the valid parameters of ``(p, chains, draws)`` in chunks; NaN rows for the others.

    The result is ``(p,)``, or ``(p, columns)`` for a function returning several columns.  The
    default ``stacklevel`` suits ``ess``/``rhat``/``mcse`` (user -> public function -> _run -> here).
    """
    ok = _valid(params, min_chains, stacklevel)
    if ok is not None and bool(ok.all()):
        return _chunked(fn, params)
    size = (params.shape[0],) if columns is None else (params.shape[0], columns)
    out = torch.full(size, float("nan"), dtype=torch.float64, device=params.device)
    if ok is not None and bool(ok.any()):
        out[ok] = _chunked(fn, params[ok])
    return out


def _run(x, fn: Callable[[Tensor], Tensor], min_chains: int) -> Tensor:
    params, shape = _as_params(x)
    return apply_valid(params, fn, min_chains).reshape(shape)


# --------------------------------------------------------------------------- building blocks
def split_chains(x: Tensor) -> Tensor:
    """``(p, chains, draws)`` -> ``(p, 2 chains, draws // 2)``: first and last halves (odd: middle dropped)."""
    half = x.shape[-1] // 2
    return torch.cat([x[..., :half], x[..., x.shape[-1] - half :]], dim=1)


def _tie_midpoints(values: Tensor) -> Tensor:
    """For rows sorted ascending, ``first + last`` (0-based) of each element's run of equal values.

    Without ties this is ``2 i``.  Ties are common here (a rejected MALA step repeats its draw, so
    a run at acceptance 0.57 ties about 40% of its sorted neighbours; folding at the median makes its
    two neighbours equal).  Every element gets a global run index from one cumulative sum of the run
    starts; with many ties (more than ``1/8`` of the elements) the runs' lengths come from a
    ``bincount`` and each element reads its run's midpoint (dense, 3x faster than gathering the tied
    positions at 40% ties); with few, only the tied positions are gathered and written over ``2 i``.
    """
    p, n = values.shape
    start = torch.ones((p, n), dtype=torch.bool, device=values.device)  # a run of equal values starts here
    torch.ne(values[:, 1:], values[:, :-1], out=start[:, 1:])
    run = torch.cumsum(start.view(-1), 0)  # 1-based global run index of every element
    tied_count = p * n - int(run[-1])
    position = torch.arange(n, device=values.device)
    if tied_count == 0:
        return (2 * position).expand(p, n)
    if 8 * tied_count > p * n:
        counts = torch.bincount(run)  # counts[0] = 0: run indices start at 1
        ends = torch.cumsum(counts, 0)  # one past the global position of each run's last element
        midpoints = (2 * ends - counts - 1)[run].view(p, n)
        midpoints -= (2 * n) * torch.arange(p, device=values.device)[:, None]
        return midpoints
    end = torch.ones_like(start)  # the run ends here
    end[:, :-1] = start[:, 1:]
    midpoints = (2 * position).expand(p, n).clone()
    flat = torch.nonzero(~(start & end).view(-1)).squeeze(1)  # positions in a run of two or more
    starts = start.view(-1)[flat]
    first_of = torch.cumsum(starts.to(torch.int64), 0) - 1
    first = flat[starts][first_of]
    last = flat[end.view(-1)[flat]][first_of]
    midpoints.view(-1)[flat] = first + last - 2 * (flat // n) * n
    return midpoints


def sort_rows(v: Tensor) -> tuple[Tensor, Tensor]:
    """``(values, order)`` of every row of float64 ``v`` sorted ascending.

    On the CPU the rows are sorted as packed integer keys (:func:`_packed_sort`): numpy sorts int64
    values (vectorised) 2-3x faster than it argsorts float64 ones; on a GPU ``torch.sort``.  Any order
    among equal values will do: ranks come from runs of equal values, not from positions.
    """
    if v.device.type == "cpu" and v.dtype == torch.float64:
        bits = v.contiguous().view(torch.int64)
        keys = bits >> 63  # -1 for negative values: flip their 63 low bits so that keys rise with the values
        keys &= _INT64_MAX
        keys ^= bits
        return _packed_sort(keys, v, None)
    return torch.sort(v, dim=-1)


_INT64_MAX = (1 << 63) - 1


def _packed_sort(keys: Tensor, values: Tensor, kind: "str | None", positions: Tensor | None = None,
                 ) -> tuple[Tensor, Tensor]:
    """Sort the rows of ``values`` by ``keys`` (int64, ordered as the values), returning ``(values, order)``.

    The position ``j`` of each value is packed into the low ``b = bits(n - 1)`` bits of its key, the
    key's own low bits dropped: ``k' = floor(k / 2^b) 2^b + j``; sorting the ``k'`` (a plain integer
    sort) sorts the values and carries their positions.  Values whose keys agree above the low ``b``
    bits (relative differences below about ``2^(b - 52)``; exact ties are harmless) can come out of
    order: those few runs are re-sorted exactly by value.  ``kind="stable"`` asks numpy for timsort,
    linear on rows made of a few ascending or descending runs (the folded draws).  ``positions``: the
    numbers packed (a permutation of ``0..n-1`` that is its own inverse; by default in order); ``order``
    is where each sorted value was in ``values``.
    """
    n = values.shape[-1]
    width = max(1, (n - 1).bit_length())
    low = (1 << width) - 1
    packed = keys & ~low
    packed |= torch.arange(n, dtype=torch.int64, device=keys.device) if positions is None else positions
    _rows_threads(lambda a: a.sort(axis=-1, kind=kind), packed.numpy())  # in place
    order = packed & low
    if positions is not None:
        order = positions[order]
    out = torch.take_along_dim(values, order, dim=-1)
    disorder = out[:, 1:] < out[:, :-1]
    if bool(disorder.any()):
        _repair_runs(out, order, packed, width, disorder)
    return out, order


def _folded_position(i: Tensor) -> Tensor:
    """Where the ``i``-th entry of ``[reversed first half, second half]`` lies in a row of even length (an involution)."""
    half = i.shape[-1] // 2
    return torch.where(i < half, half - 1 - i, i)


def _repair_runs(out: Tensor, order: Tensor, packed: Tensor, width: int, disorder: Tensor) -> None:
    """Re-sort by value, in place, the runs of equal high key bits (``packed >> width``) that hold a pair out of order.

    The high keys of a row are sorted, so each run is found by two binary searches; the runs' positions
    are gathered and sorted by (run, value) at once.
    """
    rows, cols = torch.nonzero(disorder, as_tuple=True)
    for row in torch.unique(rows).tolist():
        high = (packed[row] >> width).numpy()
        at = high[cols[rows == row].numpy()]
        starts = np.unique(np.searchsorted(high, at, "left"))
        lengths = np.searchsorted(high, high[starts], "right") - starts
        run = np.repeat(np.arange(starts.size), lengths)
        where = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        vals, pos = out[row].numpy(), order[row].numpy()
        perm = np.lexsort((vals[where], run))
        vals[where], pos[where] = vals[where][perm], pos[where][perm]


def _rows_threads(fn: Callable[[np.ndarray], object], a: np.ndarray) -> None:
    """``fn`` (in place) on blocks of rows of ``a``, split over torch's thread count (numpy releases the GIL while sorting).

    Inside a pool worker (chunks already run side by side) the rows are done in this thread.
    """
    workers = min(torch.get_num_threads(), a.shape[0])
    if workers < 2 or a.size < 1_000_000 or _in_worker():
        fn(a)
        return
    bounds = np.linspace(0, a.shape[0], workers + 1).astype(int)
    list(_pool(workers).map(lambda k: fn(a[bounds[k]:bounds[k + 1]]), range(workers)))


def folded_sort(values: Tensor, order: Tensor, median: Tensor) -> tuple[Tensor, Tensor]:
    """``(values, order)`` of ``|x - median|`` sorted, from the sort of ``x`` (rows of even length).

    Below the median the distances fall as ``x`` rises, above it they rise: a descending and an
    ascending run, which a stable sort (timsort) of their packed keys reverses and merges in linear time
    instead of sorting afresh.  The first half packs its positions in reverse, so that its run is
    strictly descending.
    """
    n = values.shape[-1]
    half = n // 2
    if values.device.type == "cpu" and n % 2 == 0 and values.dtype == torch.float64:
        dist = (values - median[:, None]).abs()  # >= 0, so its bits rise with it; abs() turns -0.0 into 0.0
        positions = _folded_position(torch.arange(n, dtype=torch.int64))
        fvalues, i = _packed_sort(dist.view(torch.int64), dist, "stable", positions)
        return fvalues, torch.take_along_dim(order, i, dim=-1)
    dist = torch.cat([(median[:, None] - values[:, :half]).flip(-1), values[:, half:] - median[:, None]], 1)
    where = torch.cat([order[:, :half].flip(-1), order[:, half:]], 1)
    merge = torch.sort(dist.abs(), dim=-1, stable=True).indices
    return torch.take_along_dim(dist, merge, dim=-1).abs(), torch.take_along_dim(where, merge, dim=-1)


def sort_values(v: Tensor) -> Tensor:
    """Every row sorted ascending (values only; numpy's vectorised sort on the CPU)."""
    if v.device.type == "cpu":
        values = v.numpy().copy()
        _rows_threads(lambda a: a.sort(axis=-1), values)
        return torch.from_numpy(values)
    return torch.sort(v, dim=-1).values


def order_statistics(v: Tensor, ks: Sequence[int]) -> list[Tensor]:
    """The ``k``-th smallest value (1-based) of every row for each ``k`` in ``ks`` (selection, not a sort)."""
    if v.device.type == "cpu":
        part = np.partition(v.numpy(), [k - 1 for k in ks], axis=-1)
        return [torch.from_numpy(np.ascontiguousarray(part[..., k - 1])) for k in ks]
    return [torch.kthvalue(v, k, dim=-1).values for k in ks]


_TABLES: dict[tuple[int, str], Tensor] = {}


def _score_table(n: int, device: torch.device) -> Tensor:
    """``Phi^-1((r - 3/8) / (n + 1/4))`` for the ``2n - 1`` half-integer ranks ``r = 1, 1.5, ..., n`` (cached)."""
    key = (n, str(device))
    if key not in _TABLES:
        if len(_TABLES) > 8:
            _TABLES.clear()
        half_ranks = torch.arange(2 * n - 1, dtype=torch.float64, device=device) / 2.0 + 1.0
        _TABLES[key] = torch.special.ndtri((half_ranks - _BLOM) / (n - 2 * _BLOM + 1))
    return _TABLES[key]


def _scores_from_sorted(values: Tensor, order: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Normal scores of the average ranks, given every row's sorted values and their positions."""
    p, n = values.shape
    scores = _score_table(n, values.device)[_tie_midpoints(values)]
    return torch.empty((p, n), dtype=scores.dtype, device=scores.device).scatter_(-1, order, scores).reshape(shape)


def rank_normalize(x: Tensor) -> Tensor:
    """Normal scores of the ranks over all chains and draws: ``Phi^-1((r - 3/8) / (n + 1/4))``.

    ``r`` is the average rank (ties share it; scipy's ``rankdata``).  Scores depend only on the
    position in sorted order, so they come from a table of the ``2n - 1`` possible half-integer ranks
    rather than one ``ndtri`` per draw.
    """
    values, order = sort_rows(x.reshape(x.shape[0], -1))
    return _scores_from_sorted(values, order, tuple(x.shape))


def _quantile(x: Tensor, prob: float) -> Tensor:
    """Type-7 quantile over all chains and draws, per parameter ``(p,)``.

    Written as ArviZ's ``mquantiles(alphap=1, betap=1)`` writes it, ``(1 - g) x_(k) + g x_(k+1)``,
    so that values on a tie (the two middle draws around the median) round as they do there; the
    two order statistics come from selection, not a full sort.
    """
    flat = x.reshape(x.shape[0], -1)
    k, g = _quantile_position(flat.shape[-1], prob)
    lower, upper = order_statistics(flat, (k, k + 1))
    return (1.0 - g) * lower + g * upper


def _quantile_position(n: int, prob: float) -> tuple[int, float]:
    """``(k, g)`` of the type-7 quantile ``(1 - g) x_(k) + g x_(k+1)`` of ``n`` values, as ArviZ computes them."""
    m = 1.0 + prob * (1.0 - 1.0 - 1.0)  # alphap + p (1 - alphap - betap), in scipy's order of operations
    aleph = n * prob + m
    k = int(math.floor(min(max(aleph, 1.0), n - 1.0)))
    return k, min(max(aleph - k, 0.0), 1.0)


def _quantile_from_sorted(values: Tensor, prob: float) -> Tensor:
    k, g = _quantile_position(values.shape[-1], prob)
    return (1.0 - g) * values[:, k - 1] + g * values[:, k]


def _fold(x: Tensor) -> Tensor:
    return (x - _quantile(x, 0.5)[:, None, None]).abs()


def _fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


GRAM_MAX_DRAWS = 128
"""Chains of at most this many draws (and at least half as many chains) get their autocovariance from a Gram matrix."""


def mean_autocovariance(x: Tensor) -> Tensor:
    """Biased autocovariance at every lag, averaged over chains: ``(p, chains, n) -> (p, n)``.

    ``acov_k = 1/(C n) sum_c sum_t y_ct y_c,t+k`` with ``y`` the draws less their chain's mean.  Short
    chains in numbers (``n <= GRAM_MAX_DRAWS``, ``C >= n / 2``: a real GAN's refine, thousands of chains
    of a hundred draws) sum the ``k``-th diagonals of the ``n x n`` Gram matrix ``Y^T Y`` (one matrix
    product over all chains: 2x faster than the FFT at 50 draws, on a par at 128); otherwise the chain
    average is taken on the power spectrum, one inverse FFT per parameter instead of one per chain.
    """
    p, c, n = x.shape
    centred = x - x.mean(-1, keepdim=True)
    if n <= GRAM_MAX_DRAWS and 2 * c >= n:
        gram = torch.matmul(centred.transpose(1, 2), centred)  # (p, n, n)
        # reading row r of the n(n+1)-long flattening at stride n+1 puts gram[r, r+k] in column k
        skew = torch.nn.functional.pad(gram.reshape(p, n * n), (0, n)).reshape(p, n, n + 1)[..., :n]
        lags = torch.arange(n, device=x.device)
        return (skew * (lags[:, None] + lags[None, :] < n)).sum(1) / (c * n)
    m = _fft_length(2 * n)
    f = torch.fft.rfft(centred, n=m, dim=-1)
    power = (f.real.square() + f.imag.square()).mean(1)
    return torch.fft.irfft(power, n=m, dim=-1)[..., :n] / n


def ess_core(x: Tensor, relative: bool = False) -> Tensor:
    """ESS of each parameter of ``(p, chains, draws)`` by Geyer's initial monotone sequence.

    ``rho_t = 1 - (W - mean_c acov_c(t)) / var+`` with ``W`` the mean within-chain variance and
    ``var+ = W (n-1)/n + B/n``; the sum of autocorrelations stops at the first pair
    ``rho_{2m} + rho_{2m+1} <= 0`` and pair sums are made non-increasing; ``ESS = C n / tau``.
    """
    p, c, n = x.shape
    total = c * n
    span = x.reshape(p, -1)
    const = (span.max(-1).values - span.min(-1).values) < _RESOLUTION
    acov = mean_autocovariance(x)
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + x.mean(-1).var(1, unbiased=True)
    rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]  # (p, n)
    rho[:, 0] = 1.0
    n_pairs = max(1, math.ceil((n - 2) / 2))  # pairs the sequence may use before running out of lags
    if n - 3 <= 1:
        n_pairs = 1
    lags = 2 * n_pairs
    if rho.shape[1] < lags:
        rho = torch.cat([rho, rho.new_zeros(p, lags - rho.shape[1])], 1)
    pairs = rho[:, :lags].reshape(p, n_pairs, 2).sum(-1)  # S_m = rho_2m + rho_2m+1
    nonpos = pairs <= 0
    first_nonpos = torch.where(nonpos.any(1), nonpos.to(torch.int64).argmax(1), torch.full_like(pairs[:, 0], n_pairs, dtype=torch.int64))
    stop = torch.clamp(first_nonpos + 1, max=n_pairs)  # M: the pair index where the search stopped
    monotone = torch.cummin(pairs, dim=1).values
    use = torch.arange(n_pairs, device=x.device)[None, :] < (stop - 1)[:, None]  # pairs 0..M-2
    head = (monotone * use).sum(1)
    last_even = rho.gather(1, (2 * stop - 2)[:, None]).squeeze(1)
    last_pair = pairs.gather(1, (stop - 1)[:, None]).squeeze(1)
    tail = torch.where((last_pair >= 0) | (last_even > 0), last_even, torch.zeros_like(last_even))
    tail = torch.where(stop == 1, torch.ones_like(tail), tail)
    tau = -1.0 + 2.0 * head + tail
    tau = torch.clamp(tau, min=1.0 / math.log10(total))
    result = (1.0 if relative else float(total)) / tau
    result = torch.where(torch.isnan(rho).any(1), torch.full_like(result, float("nan")), result)
    return torch.where(const, torch.full_like(result, float(total)), result)


def rhat_core(x: Tensor) -> Tensor:
    """Gelman-Rubin ``sqrt((B/W + n - 1) / n)`` of ``(p, chains, draws)``, ``B = n var(chain means)``."""
    n = x.shape[-1]
    mean = x.mean(-1)
    var = (x - mean[..., None]).square_().sum(-1) / (n - 1)  # 2-4x torch's var_mean on rows of 50-250 draws
    between = n * mean.var(1, unbiased=True)
    within = var.mean(1)
    return torch.sqrt((between / within + n - 1) / n)


def tail_ess(t: Tensor, split: Tensor, values: Tensor | None = None) -> Tensor:
    """The smaller ESS of the split indicators ``x <= q_0.05`` and ``x <= q_0.95`` of ``(p, chains, draws)``.

    ``split`` is ``split_chains(t)``; ``values``, every parameter's draws sorted (then the quantiles are read
    off them instead of selected).
    """
    tails = []
    for prob in (0.05, 0.95):
        q = _quantile(t, prob) if values is None else _quantile_from_sorted(values, prob)
        tails.append(ess_core((split <= q[:, None, None]).to(torch.float64)))  # the split indicator
    return torch.minimum(*tails)


def ess_rhat_sorted(t: Tensor, split: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Bulk ESS, tail ESS and rank R-hat of ``(p, chains, draws)`` as ``(p, 3)``, from one sort of the split chains,
    and that sort's values ``(p, 2 chains (draws // 2))``.

    The sort gives the normal scores (bulk ESS and R-hat's z-scale half), the median (R-hat's folded
    half) and, when the number of draws is even (so that splitting keeps every draw, and the sorted
    values are those of all the draws), the 5% and 95% quantiles of the tail ESS; the folded draws
    are merged from it (:func:`folded_sort`).  ``split``: ``split_chains(t)``, when the caller has it.
    """
    p, c, n = t.shape
    split = split_chains(t) if split is None else split
    values, order = sort_rows(split.reshape(p, -1))
    z = _scores_from_sorted(values, order, tuple(split.shape))
    bulk = ess_core(z)
    if c >= 2:
        fvalues, forder = folded_sort(values, order, _quantile_from_sorted(values, 0.5))
        r_hat = torch.maximum(rhat_core(z), rhat_core(_scores_from_sorted(fvalues, forder, tuple(split.shape))))
    else:
        r_hat = torch.full_like(bulk, float("nan"))
    tail = tail_ess(t, split, values if n % 2 == 0 else None)
    return torch.stack([bulk, tail, r_hat], 1), values


def _ess_rhat_core(t: Tensor) -> Tensor:
    return ess_rhat_sorted(t)[0]


def ess_rhat(x) -> tuple[Tensor, Tensor, Tensor]:
    """``(bulk ESS, tail ESS, rank R-hat)`` of every parameter of ``(chains, draws, *shape)``, sharing one sort.

    Equal to ``ess(x)``, ``ess(x, method="tail")`` and ``rhat(x)``, at about the cost of ``ess`` then ``rhat``
    (the tail ESS comes from the same sort when the number of draws is even; odd, from a selection).
    """
    params, shape = _as_params(x)
    out = apply_valid(params, _ess_rhat_core, min_chains=1, columns=3, stacklevel=4)
    if params.shape[1] < 2:
        out[:, 2] = float("nan")
    return tuple(out[:, k].reshape(shape) for k in range(3))


# --------------------------------------------------------------------------- public API
EssMethod = Literal["bulk", "tail", "mean", "sd", "quantile", "median", "identity"]


def _ess_quantile_core(x: Tensor, prob: float, relative: bool) -> Tensor:
    q = _quantile(x, prob)
    return ess_core(split_chains(x <= q[:, None, None]).to(torch.float64), relative)  # split the bools, then widen


def _tail_probs(prob) -> tuple[float, float]:
    if prob is None:
        return 0.05, 0.95
    if isinstance(prob, Sequence):
        lo, hi = prob
        return float(lo), float(hi)
    return float(prob), 1.0 - float(prob)


class _Method(NamedTuple):
    summary: str
    build: Callable  # (prob, relative) -> the function of a (p, chains, draws) tensor


def _ess_quantile_builder(prob, relative: bool):
    if prob is None or isinstance(prob, Sequence):
        raise ValueError("ess(method='quantile') needs one probability, prob=q in (0, 1)")
    return lambda t: _ess_quantile_core(t, float(prob), relative)


def _ess_tail_builder(prob, relative: bool):
    lo, hi = _tail_probs(prob)
    return lambda t: torch.minimum(_ess_quantile_core(t, lo, relative), _ess_quantile_core(t, hi, relative))


ESS_METHODS: dict[str, _Method] = {
    "bulk": _Method("ESS of the rank-normalised split chains",
                    lambda prob, relative: lambda t: ess_core(rank_normalize(split_chains(t)), relative)),
    "tail": _Method("the smaller ESS of the indicators x <= q_0.05 and x <= q_0.95 (or of prob)", _ess_tail_builder),
    "mean": _Method("ESS of x", lambda prob, relative: lambda t: ess_core(split_chains(t), relative)),
    "sd": _Method("ESS of (x - mean)^2", lambda prob, relative: lambda t: ess_core(
        split_chains((t - t.mean((1, 2), keepdim=True)).square()), relative)),
    "quantile": _Method("ESS of x <= q_prob", _ess_quantile_builder),
    "median": _Method("ESS of x <= median", lambda prob, relative: _ess_quantile_builder(0.5, relative)),
    "identity": _Method("ESS of x without splitting the chains", lambda prob, relative: lambda t: ess_core(t, relative)),
}
"""The ESS methods (as arviz-stats' ``_ess_{method}``): name -> summary and the computation."""


def ess(x, method: EssMethod = "bulk", prob: float | Sequence[float] | None = None, relative: bool = False) -> Tensor:
    r"""Effective sample size of every parameter of draws ``(chains, draws, *shape)``.

    ``method`` is one of :data:`ESS_METHODS`: ``bulk`` (rank-normalised split chains), ``tail``,
    ``mean``, ``sd``, ``quantile`` (needs ``prob``), ``median``, ``identity`` (no splitting).
    ``ESS = C n / tau`` with ``tau = -1 + 2 sum_t rho_t`` (Geyer).  ``relative`` divides by the number of
    draws.  NaN (with a warning) for fewer than 4 draws or NaN draws.
    """
    if method not in ESS_METHODS:
        raise ValueError(f"unknown ess method {method!r}; use one of {', '.join(ESS_METHODS)}")
    return _run(x, ESS_METHODS[method].build(prob, relative), min_chains=1)


RhatMethod = Literal["rank", "split", "identity", "folded", "z_scale", "nested"]


def _same(t: Tensor) -> Tensor:
    return t


def _folded_ranks(t: Tensor) -> Tensor:
    return rank_normalize(_fold(t))


_RHAT_TRANSFORMS = {  # name -> (transforms of the (split) chains whose R-hats' maximum is taken, split the chains)
    "rank": ((rank_normalize, _folded_ranks), True),
    "split": ((_same,), True),
    "identity": ((_same,), False),
    "folded": ((_folded_ranks,), True),
    "z_scale": ((rank_normalize,), True),
}

RHAT_METHODS: dict[str, str] = {
    "rank": "max of the rank-normalised split R-hat and that of the folded draws |x - median| (Vehtari et al. 2021)",
    "split": "on split chains",
    "identity": "classic Gelman-Rubin, chains not split",
    "folded": "the rank-normalised folded draws, split",
    "z_scale": "the rank-normalised split chains",
    "nested": "nested R-hat over superchains (Margossian et al. 2024), rank version",
}
"""The R-hat methods: name -> summary (``nested`` needs superchains)."""


def _rhat_rank(t: Tensor) -> Tensor:
    """Rank R-hat from two sorts: the split chains' (normal scores and their median) and the folded draws'."""
    s = split_chains(t)
    values, order = sort_rows(s.reshape(s.shape[0], -1))
    z = _scores_from_sorted(values, order, tuple(s.shape))
    fvalues, forder = folded_sort(values, order, _quantile_from_sorted(values, 0.5))
    return torch.maximum(rhat_core(z), rhat_core(_scores_from_sorted(fvalues, forder, tuple(s.shape))))


def nested_rhat_core(x: Tensor, ids: Tensor) -> Tensor:
    r"""Nested R-hat of ``(p, chains, draws)`` with chains grouped into equal superchains ``ids`` (Margossian et al.).

    With chain means and variances, ``B_k`` the variance of the chain means in superchain ``k`` (0 for
    one chain each), ``W_k`` their mean within-chain variance, ``B_nu`` the variance of the superchain
    means and ``W_nu = mean_k (W_k + B_k)``: ``sqrt(1 + B_nu / W_nu)``.
    """
    p, c, n = x.shape
    order = torch.argsort(ids, stable=True)
    k = int(ids.max()) + 1
    m = c // k
    grouped = x[:, order].reshape(p, k, m, n)
    chain_mean = grouped.mean(-1)
    chain_var = grouped.var(-1, unbiased=True) if n > 1 else torch.zeros_like(chain_mean)
    between_chain = chain_mean.var(-1, unbiased=True) if m > 1 else torch.zeros(p, k, dtype=x.dtype, device=x.device)
    within_super = (chain_var.mean(-1) + between_chain).mean(-1)
    between_super = chain_mean.mean(-1).var(-1, unbiased=True)
    return torch.sqrt(1.0 + between_super / within_super)


def superchain_ids(chains: int, superchains: "int | Tensor | Sequence[int]", device=None) -> Tensor:
    """``(chains,)`` superchain index of every chain: ``superchains`` groups of consecutive chains, or the ids given.

    Every superchain must hold the same number of chains.
    """
    if isinstance(superchains, int) and not isinstance(superchains, bool):
        if superchains < 2 or chains % superchains:
            raise ValueError(f"superchains={superchains} must be >= 2 and divide the {chains} chains evenly")
        ids = torch.arange(chains, device=device) // (chains // superchains)
    else:
        ids = torch.as_tensor(superchains, device=device).long().reshape(-1)
        if ids.numel() != chains:
            raise ValueError(f"superchain ids have {ids.numel()} entries for {chains} chains")
        if bool((ids < 0).any()):
            raise ValueError("superchain ids must be >= 0")
        _, ids = torch.unique(ids, return_inverse=True)
        counts = torch.bincount(ids)
        if counts.numel() < 2 or bool((counts != counts[0]).any()):
            raise ValueError(f"superchains must be at least 2 and hold equal numbers of chains, got sizes {counts.tolist()}")
    return ids


def rhat_nested(x, superchains: "int | Tensor | Sequence[int]", method: RhatMethod = "rank") -> Tensor:
    r"""Nested R-hat (Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari & Gelman 2024) for many short chains.

    Chains are grouped into ``superchains`` (an int: that many groups of consecutive chains; or a
    ``(chains,)`` id per chain, equal group sizes); the statistic compares superchain means with the
    variance within superchains, so it stays informative when every chain is short.  ``method`` as
    for :func:`rhat` (``rank``: max of the rank-normalised and folded versions on split chains; the
    two halves of a chain stay in its superchain).  Equal to arviz-stats' ``rhat_nested``.
    """
    params, shape = _as_params(x)
    ids = superchain_ids(params.shape[1], superchains, params.device)
    split_ids = torch.cat([ids, ids])

    def nested(t: Tensor, transform, split: bool) -> Tensor:
        t = split_chains(t) if split else t
        return nested_rhat_core(transform(t), split_ids if split else ids)

    if method not in _RHAT_TRANSFORMS:
        raise ValueError(f"unknown rhat method {method!r}; use one of {', '.join(_RHAT_TRANSFORMS)}")
    transforms, split = _RHAT_TRANSFORMS[method]

    def worst(t: Tensor) -> Tensor:
        values = [nested(t, transform, split) for transform in transforms]
        return values[0] if len(values) == 1 else torch.maximum(*values)

    return apply_valid(params, worst, min_chains=2, stacklevel=4).reshape(shape)


def rhat(x, method: RhatMethod = "rank", superchains: "int | Tensor | Sequence[int] | None" = None) -> Tensor:
    r"""Potential scale reduction of every parameter of draws ``(chains, draws, *shape)``.

    ``rank`` (default): ``max`` of the rank-normalised split R-hat and that of the folded draws
    ``|x - median|`` (Vehtari et al. 2021); ``split``: on split chains; ``identity``: classic
    Gelman-Rubin; ``folded``/``z_scale``: the two halves of ``rank``; ``nested``: nested R-hat over
    ``superchains`` (see :func:`rhat_nested`, of which it is the rank version).  Needs 2 chains and
    4 draws (else NaN with a warning); a constant parameter gives NaN, chains each constant at a different
    value an enormous R-hat (about 1e16 from rounding, as ArviZ; or inf).
    """
    if method == "nested":
        if superchains is None:
            raise ValueError("rhat(method='nested') needs superchains= (a number of groups or an id per chain)")
        return rhat_nested(x, superchains, "rank")
    if method not in RHAT_METHODS:
        raise ValueError(f"unknown rhat method {method!r}; use one of {', '.join(RHAT_METHODS)}")
    if method == "rank":  # both halves from one sort (equal to the general path, tested)
        return _run(x, _rhat_rank, min_chains=2)
    transforms, split = _RHAT_TRANSFORMS[method]

    def worst(t: Tensor) -> Tensor:
        values = [rhat_core(transform(split_chains(t) if split else t)) for transform in transforms]
        return values[0] if len(values) == 1 else torch.maximum(*values)

    return _run(x, worst, min_chains=2)


def _mcse_mean(t: Tensor) -> Tensor:
    sd = t.reshape(t.shape[0], -1).std(-1, unbiased=True)
    return sd / torch.sqrt(ess_core(split_chains(t)))


def _mcse_sd(t: Tensor) -> Tensor:
    sq = (t - t.mean((1, 2), keepdim=True)).square()
    e = ess_core(split_chains(sq))
    evar = sq.mean((1, 2))
    varvar = (sq.square().mean((1, 2)) - evar.square()) / e
    return torch.sqrt(varvar / evar / 4.0)


def _mcse_quantile(t: Tensor, prob: float) -> Tensor:
    from scipy import (
        stats,  # Beta quantiles of a few values per parameter; torch has none
    )

    e_np = _ess_quantile_core(t, prob, False).cpu().numpy()
    with np.errstate(invalid="ignore"):
        lo = stats.beta.ppf(0.1586553, e_np * prob + 1, e_np * (1 - prob) + 1)
        hi = stats.beta.ppf(0.8413447, e_np * prob + 1, e_np * (1 - prob) + 1)
    values = sort_values(t.reshape(t.shape[0], -1))
    size = values.shape[-1]
    lo_i = np.floor(np.fmax(lo * size - 1, 0)).astype(np.int64)
    hi_i = np.ceil(np.fmin(hi * size - 1, size - 1)).astype(np.int64)
    lo_t = torch.as_tensor(lo_i, device=t.device)[:, None]
    hi_t = torch.as_tensor(hi_i, device=t.device)[:, None]
    return (values.gather(1, hi_t) - values.gather(1, lo_t)).squeeze(1) / 2.0


def mcse(x, method: Literal["mean", "sd", "median", "quantile"] = "mean", prob: float | None = None) -> Tensor:
    r"""Monte Carlo standard error of the mean, sd or a quantile of every parameter.

    ``mean``: ``sd / sqrt(ESS_mean)``; ``sd``: delta method on the variance with the ESS of
    ``(x - mean)^2``; ``quantile``: half the width of the central 68% interval of the order
    statistics implied by ``Beta(ESS q + 1, ESS (1 - q) + 1)``.
    """
    if method == "mean":
        fn = _mcse_mean
    elif method == "sd":
        fn = _mcse_sd
    elif method in ("quantile", "median"):
        q = 0.5 if method == "median" else prob
        if q is None:
            raise ValueError("mcse(method='quantile') needs prob=q in (0, 1)")
        fn = lambda t: _mcse_quantile(t, float(q))  # noqa: E731
    else:
        raise ValueError(f"unknown mcse method {method!r}; use mean, sd, median or quantile")
    return _run(x, fn, min_chains=1)
