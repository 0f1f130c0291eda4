"""Cost per effective sample of each kernel: model passes and wall time per ESS, and i-SIR against latent size.

Part 1 (``--models demo3 demo20 digits``): every named sampler on the demo model at beta 3 and 20 and
on a digits model (``runs/digits/digits-dim.pt``, trained by ``benchmarks/digits_study.py`` or
``latentmcmc train --data digits --width 256 --steps 6000``), 1,000 chains, 100 warm-up + 200
recorded steps each (i-SIR and Ex2MCMC count steps too, not passes): passes per chain and step,
acceptance, jump rate, bulk ESS of the energy over the recorded steps, and from them model passes
and milliseconds per effective sample (all chains).

Part 2 (``--isir-latents 2 16 64 128``): i-SIR with prior proposals against latent size, on a target
that differs from the prior by the same amount in every latent direction (G the identity, U(x) =
|x - 0.5|^2 / 2, beta 1: the target is N(0.25, 0.5 I), KL to the prior 0.128 nats per coordinate), as a
critic that reshapes every direction of a large latent does: importance weights degenerate as the
dimension grows.  Jump rate and passes per effective sample (worst coordinate) against MALA.

    python benchmarks/global_moves.py
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from latentmcmc import LatentEnergy
from latentmcmc.diagnostics import ess
from latentmcmc.samplers import SAMPLERS, SamplerOptions, make_sampler

torch.set_num_threads(1)


def models(names: list[str]):
    from latentmcmc.checkpoint import load_models
    from latentmcmc.demo import load_demo_models

    for name in names:
        if name.startswith("demo"):
            g, u, _ = load_demo_models()
            yield f"demo, beta {name[4:]}", LatentEnergy(g, u, beta=float(name[4:])), (2,)
        elif name == "digits":
            path = "runs/digits/digits-dim.pt"
            if not os.path.exists(path):
                print(f"(skipping digits: no {path})")
                continue
            g, u, config = load_models(path)
            yield "digits, beta 1", LatentEnergy(g, u, beta=1.0), (int(config["latent_dim"]),)


def measure(name: str, energy, shape, chains: int, warmup: int, steps: int, worst_coordinate: bool = False) -> dict:
    options = SamplerOptions(eps=0.01, candidates=10, local_steps=3, leapfrog_steps=10, flow_lr=1e-2)
    sampler = make_sampler(name, energy, options)
    z0 = torch.randn(chains, *shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    run = sampler.run(z0, steps=steps, warmup=warmup, seed=1, progress=False)
    seconds = time.perf_counter() - t0
    total_steps = warmup + steps
    per_step = run.evaluations.passes / total_steps
    e = float(ess(run.draws.reshape(chains, steps, -1)).min()) if worst_coordinate else float(ess(run.energy))
    recorded_passes = per_step * steps * chains
    return {"passes/step": per_step, "acceptance": float(run.acceptance_rate.mean()),
            "jump": float(run.jump_rate.mean()) if run.jump_rate is not None else float("nan"),
            "ESS": e, "passes/ESS": recorded_passes / e, "ms/ESS": 1e3 * seconds * steps / total_steps / e}


class HalfShift(nn.Module):
    """U(x) = |x - 0.5|^2 / 2 summed over coordinates."""

    def forward(self, x):
        return 0.5 * (x - 0.5).square().sum(1)


def isir_against_dimension(latents: list[int], chains: int, steps: int) -> None:
    print(f"\ni-SIR with prior proposals vs latent size (target N(0.25, 0.5 I), {chains} chains, {steps // 2} warm-up + "
          f"{steps} steps; ESS of the worst coordinate)")
    print(f"{'latent':>7} {'sampler':>8} {'jump/acc':>9} {'ESS':>8} {'passes/ESS':>11} {'ms/ESS':>8}")
    for d in latents:
        energy = LatentEnergy(nn.Identity(), HalfShift(), beta=1.0)
        for name in ("isir", "mala"):
            m = measure(name, energy, (d,), chains, steps // 2, steps, worst_coordinate=True)
            rate = m["jump"] if name == "isir" else m["acceptance"]
            print(f"{d:>7} {name:>8} {rate:>9.3f} {m['ESS']:>8.0f} {m['passes/ESS']:>11.1f} {m['ms/ESS']:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["demo3", "demo20", "digits"])
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--isir-latents", nargs="*", type=int, default=[2, 16, 64, 128])
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}, torch {torch.__version__}, 1 thread")
    for label, energy, shape in models(args.models):
        print(f"\n{label}: {args.chains} chains, {args.warmup} warm-up + {args.steps} recorded steps")
        print(f"{'sampler':>18} {'passes/step':>12} {'accept':>7} {'jump':>6} {'ESS':>8} {'passes/ESS':>11} {'ms/ESS':>8}")
        for name in args.samplers:
            m = measure(name, energy, shape, args.chains, args.warmup, args.steps)
            print(f"{name:>18} {m['passes/step']:>12.1f} {m['acceptance']:>7.3f} {m['jump']:>6.3f} {m['ESS']:>8.0f} "
                  f"{m['passes/ESS']:>11.1f} {m['ms/ESS']:>8.3f}")
    if args.isir_latents:
        isir_against_dimension(args.isir_latents, args.chains, args.steps)


if __name__ == "__main__":
    main()
