"""An ArviZ-style summary table of a run, computed in torch on the chains' device."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from ..chains import Chains
from .convergence import (
    _as_params,
    _chunked,
    _quantile,
    apply_valid,
    ess_core,
    ess_rhat_sorted,
    rank_normalize,
    rhat_core,
    sort_values,
    split_chains,
    tail_ess,
)

__all__ = ["summary", "hdi"]

COLUMNS = ("mean", "sd", "hdi_lower", "hdi_upper", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")


def _hdi_core(t: Tensor, prob: float, values: Tensor | None = None) -> Tensor:
    """Narrowest interval holding ``floor(prob n)`` + 1 sorted draws, ``(p, 2)`` (ArviZ's ``hdi``).

    ``values``: every parameter's draws already sorted, ``(p, chains draws)``.
    """
    if values is None:
        values = sort_values(t.reshape(t.shape[0], -1))
    n = values.shape[-1]
    inc = int(math.floor(prob * n))
    widths = values[:, inc:] - values[:, : n - inc]
    lo = torch.argmin(widths, dim=-1, keepdim=True)
    return torch.cat([values.gather(1, lo), values.gather(1, lo + inc)], dim=1)


def hdi(x, prob: float = 0.94) -> Tensor:
    """Highest-density interval of every parameter of ``(chains, draws, *shape)``: ``(*shape, 2)``."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"hdi prob must be in (0, 1), got {prob}")
    params, shape = _as_params(x)
    return _chunked(lambda t: _hdi_core(t, prob), params).reshape(*shape, 2)


def _summary_core(t: Tensor, hdi_prob: float) -> Tensor:
    """All summary columns for ``(p, chains, draws)`` with shared intermediates, as ArviZ's summary."""
    c = t.shape[1]
    mean = t.mean((1, 2))
    sq = (t - mean[:, None, None]).square()
    size = sq[0].numel()
    sq_sum = sq.sum((1, 2))
    var = sq_sum / (size - 1)
    sd = torch.sqrt(var)
    split = split_chains(t)
    mcse_mean = torch.sqrt(var / ess_core(split))
    evar = sq_sum / size
    varvar = (sq.square().mean((1, 2)) - evar.square()) / ess_core(split_chains(sq))
    mcse_sd = torch.sqrt(varvar / evar / 4.0)
    if t.shape[2] % 2 == 0:  # splitting keeps every draw: one sort serves the ESS, R-hat and the HDI
        ranked, values = ess_rhat_sorted(t, split)
        ess_bulk, ess_tail, r_hat = ranked.unbind(1)
        return torch.stack([mean, sd, *_hdi_core(t, hdi_prob, values).unbind(1), mcse_mean, mcse_sd,
                            ess_bulk, ess_tail, r_hat], 1)
    z_split = rank_normalize(split)
    ess_bulk = ess_core(z_split)
    ess_tail = tail_ess(t, split)
    if c >= 2:
        # ArviZ's summary folds before splitting: with odd draws its median counts the middle draw
        folded = (t - _quantile(t, 0.5)[:, None, None]).abs()
        r_hat = torch.maximum(rhat_core(z_split), rhat_core(rank_normalize(split_chains(folded))))
    else:
        r_hat = torch.full_like(mean, float("nan"))
    interval = _hdi_core(t, hdi_prob)
    return torch.stack([mean, sd, interval[:, 0], interval[:, 1], mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat], 1)


def _coordinate_names(prefix: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [prefix]
    return [f"{prefix}[{','.join(map(str, idx))}]" for idx in itertools.product(*(range(s) for s in shape))]


def summary(run: Chains | Tensor, hdi_prob: float = 0.94, max_rows: int = 50, var_name: str = "z"):
    """Summary table (a pandas DataFrame): mean, sd, HDI, MCSE, bulk/tail ESS and rank R-hat.

    For a :class:`Chains` the first row is the energy, then one row per latent coordinate.  With more
    than ``max_rows`` rows, every coordinate is still diagnosed but only the energy and the
    ``max_rows - 1`` coordinates with the highest R-hat (then lowest bulk ESS) are shown; the table's
    ``attrs`` says how many were left out.  The numbers follow ``arviz.summary`` (ArviZ 0.23).
    """
    import pandas as pd

    if not 0.0 < hdi_prob < 1.0:
        raise ValueError(f"hdi_prob must be in (0, 1), got {hdi_prob}")
    if isinstance(run, Chains):
        draws = run.draws
        blocks = [("energy", run.energy.unsqueeze(-1), ["energy"])]
    else:
        draws = torch.as_tensor(run)
        if draws.dim() < 2:
            raise ValueError(f"draws must have shape (chains, draws, *shape), got {tuple(draws.shape)}")
        if draws.numel() == 0:
            raise ValueError(f"draws must have at least one chain, draw and parameter, got shape {tuple(draws.shape)}")
        blocks = []
    latent = draws.reshape(draws.shape[0], draws.shape[1], -1)
    blocks.append((var_name, latent, _coordinate_names(var_name, tuple(draws.shape[2:]))))
    frames = []
    for _, values, names in blocks:
        params = values.detach().to(torch.float64).permute(2, 0, 1)
        table = apply_valid(params, lambda t: _summary_core(t, hdi_prob), 1, len(COLUMNS), stacklevel=4)
        if params.shape[2] < 4:  # too few draws for ESS, R-hat and MCSE; the moments and the HDI still mean something
            flat = params.reshape(params.shape[0], -1)
            table[:, 0], table[:, 1] = flat.mean(1), flat.std(1)
            table[:, 2:4] = _hdi_core(params, hdi_prob)
        frames.append(pd.DataFrame(table.cpu().numpy(), index=names, columns=list(COLUMNS)))
    lo, hi = 100 * (1 - hdi_prob) / 2, 100 * (1 + hdi_prob) / 2
    df = pd.concat(frames).rename(columns={"hdi_lower": f"hdi_{lo:g}%", "hdi_upper": f"hdi_{hi:g}%"})
    omitted = 0
    if len(df) > max_rows:
        head = df.iloc[: len(frames[0]) if len(frames) > 1 else 0]
        rest = df.iloc[len(head):].sort_values(["r_hat", "ess_bulk"], ascending=[False, True], na_position="first")
        keep = max(max_rows - len(head), 0)
        omitted = len(rest) - keep
        df = pd.concat([head, rest.iloc[:keep]])
    df.attrs["omitted"] = omitted
    return df
