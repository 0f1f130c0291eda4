"""How refinement's gain depends on the fitted critic: a 2-D case with known truth, the fit stopped at several lengths.

The generator is the identity (its samples are N(0, I)); the data are a mixture (weights 0.7 / 0.3 at
(-1.5, 0) and (1.5, 0.5), sd 0.5), 20,000 samples.  For each fit (``--steps``, early stopping off): the
held-out log-loss, accuracy and calibration error, the total-variation distance to the truth (16 x 16
cells over [-4, 4]^2) of the fitted target ``exp(-E)``, ``E(z) = -logit(z) + |z|^2 / 2`` (integrated on a
grid), and of 2,000 i-SIR draws of it (20 candidates, 100 steps).  Exact sampling of 2,000 points from the
truth gives the noise floor.  Each fit is measured as fitted (the default) and Platt-scaled on its held-out
samples (``--calibrate``; the slope is printed).  The last row repeats the longest fit with spectral norm on.

    python benchmarks/critic_fit_study.py
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
from torch import nn

from latentmcmc import ISIR, LatentEnergy
from latentmcmc.calibration import PlattScaled
from latentmcmc.exact import grid_target, total_variation, tv_noise_floor
from latentmcmc.fit_critic import fit_critic

torch.set_num_threads(2)
CENTRES, WEIGHTS = torch.tensor([[-1.5, 0.0], [1.5, 0.5]]), torch.tensor([0.7, 0.3])


def data_energy(x):
    sq = (x[:, None, :] - CENTRES.to(x.dtype)).square().sum(-1) / (2 * 0.25)
    return -torch.logsumexp(torch.log(WEIGHTS.to(x.dtype)) - sq, 1)


def cell(x):
    ij = ((x + 4) / 8 * 16).floor().long().clamp(0, 15)
    return ij[:, 0] * 16 + ij[:, 1]


def binned(grid):
    return torch.zeros(256, dtype=torch.float64).index_add_(0, cell(grid.points), grid.probs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="*", type=int, default=[25, 50, 100, 200, 500, 1000, 2000])
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    which = (torch.rand(20_000, generator=g) < WEIGHTS[1]).long()
    real = CENTRES[which] + 0.5 * torch.randn(20_000, 2, generator=g)
    truth = binned(grid_target(lambda z: data_energy(z.double()).float(), points_per_axis=401))
    z0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    counts = lambda x: torch.bincount(cell(x), minlength=256).double()  # noqa: E731
    floor = tv_noise_floor(truth, 2000)
    print(f"load average {os.getloadavg()[0]:.2f}; prior samples' TV {total_variation(counts(z0), truth):.3f}; exact "
          f"sampling's TV {floor[0]:.3f} (95%: {floor[1]:.3f})")
    print(f"{'fit':>22} {'log-loss':>9} {'accuracy':>9} {'calib.':>7} {'slope':>6} | as fitted: {'TV target':>9} "
          f"{'TV refined':>10} | Platt-scaled: {'TV target':>9} {'TV refined':>10} {'s':>5}")
    runs = [(steps, False) for steps in args.steps] + [(max(args.steps), True)]
    for steps, normalized in runs:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = fit_critic(nn.Identity(), real, (2,), steps=steps, eval_every=min(50, steps), patience=10**6,
                                width=128, normalized=normalized, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        scaling = fitted.report["platt_scaling"]
        tvs = []
        for critic in (fitted.critic, PlattScaled(fitted.critic, scaling["slope"], scaling["intercept"])):
            energy = LatentEnergy(nn.Identity(), critic, critic_output="logit")
            target = binned(grid_target(energy, points_per_axis=401))
            draws = ISIR(energy, candidates=20).run(z0, steps=100, seed=2, record="last", progress=False).last
            tvs += [total_variation(target, truth), total_variation(counts(draws), truth)]
        held = fitted.report["held_out"]
        name = f"{steps} steps" + (", spectral norm" if normalized else "")
        print(f"{name:>22} {held['log_loss']:>9.3f} {held['accuracy']:>9.3f} {held['calibration_error']:>7.3f} "
              f"{scaling['slope']:>6.2f} | {'':>10} {tvs[0]:>9.3f} {tvs[1]:>10.3f} | {'':>13} {tvs[2]:>9.3f} "
              f"{tvs[3]:>10.3f} {seconds:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
