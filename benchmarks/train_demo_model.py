"""Train the small 25-Gaussians model that ships as ``latentmcmc/assets/demo_gaussians25.pt``.

Width-256 MLPs, the DIM entropy term, Adam at lr 2e-4 (betas 0.5, 0.9), 8,000 generator steps (about
5 minutes on 2 CPU cores; the generator covers all 25 modes); the shipped file keeps
the generator, the critic and the config (no optimiser states, MI network or history), so it is
small.  Prints the quality of prior samples and of latent MALA at the demo's settings.

    python benchmarks/train_demo_model.py --steps 8000 --lr 2e-4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from latentmcmc.checkpoint import save_checkpoint
from latentmcmc.demo import demo_checkpoint
from latentmcmc.refinement import refine
from latentmcmc.training import TrainConfig, Trainer, load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--entropy", default="dim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=demo_checkpoint())
    p.add_argument("--full", type=Path, default=Path("runs/demo-full.pt"), help="full checkpoint (resumable)")
    args = p.parse_args()
    t0 = time.perf_counter()
    config = TrainConfig(data="gaussians25", entropy=args.entropy, width=args.width, seed=args.seed, lr=args.lr)
    trainer = Trainer.resume(args.full) if args.full.exists() else Trainer(config)
    trainer.train(args.steps, args.full, checkpoint_every=500, progress=False)
    print(f"trained {trainer.step} steps in {(time.perf_counter() - t0) / 60:.1f} min")
    models = {k: v for k, v in trainer.nets.items() if k in ("generator", "critic")}
    save_checkpoint(args.out, {"config": trainer.config.to_dict(),
                               "models": {k: v.state_dict() for k, v in models.items()}, "step": trainer.step})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    data = load_dataset("gaussians25")
    for beta in (1.0, 3.0, 10.0):
        r = refine(trainer.generator.eval(), trainer.critic.eval(), (2,), num_chains=2000, steps=300, warmup=200,
                   beta=beta, dataset=data, progress=False)
        q = r.metrics["quality"]
        print(f"beta {beta:>4}: prior {q['before']}  ->  MALA {q['after']}  (acc {r.metrics['acceptance']:.2f}, "
              f"{r.metrics['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
