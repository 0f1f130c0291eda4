"""How far a shortened 25-Gaussian recipe moves toward coverage: the distribution behind the suite's test.

Trains ``TrainConfig(data="gaussians25")`` (the recipe's width, learning rate, penalty and entropy term)
for ``--steps`` generator steps from each seed and measures the prior samples' modes (2,000 fixed draws,
the numbers ``latentmcmc train`` prints) at step 0 and at the end.  The test
``test_a_shortened_gaussians25_recipe_moves_toward_coverage`` takes its thresholds from this output.

    python benchmarks/recipe_coverage.py --steps 500 --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import subprocess
import time

import torch

from latentmcmc.training import TrainConfig, Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = p.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"gaussians25 recipe, {args.steps} steps; torch {torch.__version__}, {torch.get_num_threads()} threads; {load}")
    starts, ends = [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        trainer = Trainer(TrainConfig(data="gaussians25", seed=seed))
        start = trainer.measure()
        trainer.train(args.steps, progress=False, measure_every=0)
        end = trainer.measure()
        starts.append(start["modes"])
        ends.append(end["modes"])
        print(f"  seed {seed}: modes {start['modes']} -> {end['modes']}, hq {start['hq_fraction']:.3f} -> "
              f"{end['hq_fraction']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"modes at step 0: min {min(starts)}, max {max(starts)}; at step {args.steps}: min {min(ends)}, max {max(ends)}")


if __name__ == "__main__":
    main()
