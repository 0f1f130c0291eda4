"""What each data set's training recipe reaches, and how long it takes here (the ``reaches`` of ``DATASETS``).

Trains every built-in data set with its recipe (``TrainConfig(data=X)``, all other settings from the
recipe, seed 0), prints the data set's quality of prior samples at the end (2,000 draws for 2-D data,
1,000 images; the numbers ``latentmcmc train`` prints) and, for 2-D data, of latent MALA at beta 3
(2,000 chains, 200 warm-up + 300 steps: the refinement the README documents).

    python benchmarks/recipes.py [--data gaussians25 digits ...] [--seed 0] [--out runs/recipes]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import torch

from latentmcmc.refinement import refine
from latentmcmc.training import DATASETS, TrainConfig, Trainer
from latentmcmc.training.trainer import describe_quality


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=list(DATASETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("runs/recipes"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {load}")
    for name in args.data:
        t0 = time.perf_counter()
        trainer = Trainer(TrainConfig(data=name, seed=args.seed))
        trainer.train(progress=False, checkpoint=args.out / f"{name}.pt")
        minutes = (time.perf_counter() - t0) / 60
        c = trainer.config
        line = (f"{name}: {trainer.step} steps, width {c.width}, lr {c.lr:g} in {minutes:.1f} min -> "
                f"{describe_quality(trainer.quality_history[-1])}")
        if len(c.data_shape) == 1:
            r = refine(trainer.generator.eval(), trainer.critic.eval(), (c.latent_dim,), num_chains=2000, steps=300,
                       warmup=200, beta=args.beta, dataset=trainer.dataset, progress=False, seed=args.seed)
            line += f"; MALA beta {args.beta:g}: {describe_quality(r.metrics['quality']['after'])}"
        print(line, flush=True)
        first = trainer.quality_history[0]
        print(f"    at step 0: {describe_quality(first)}", flush=True)


if __name__ == "__main__":
    main()
