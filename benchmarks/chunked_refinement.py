"""Peak memory of refining many chains in blocks (``refine(..., block_size, record_blocks=1)``).

Each configuration runs in a fresh subprocess and reports its peak resident memory (CPU) or peak
allocated CUDA memory, with the wall time, for a small model (latent 16, MLPs of width 64):

    python benchmarks/chunked_refinement.py --chains 1000000 --block-size 65536 --steps 20
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn


def small_model(latent: int = 16) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(latent, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    u = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    return g, u


def one(chains: int, block_size: int | None, steps: int, device: str) -> dict:
    from latentmcmc.refinement import refine

    g, u = small_model()
    g, u = g.to(device), u.to(device)
    t0 = time.perf_counter()
    result = refine(g, u, (16,), num_chains=chains, steps=steps, warmup=steps, block_size=block_size,
                    record_blocks=1 if block_size else None, progress=False, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"chains": chains, "block_size": block_size, "seconds": time.perf_counter() - t0, "peak_mib": peak,
            "acceptance": result.metrics["acceptance"], "device": device}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chains", type=int, default=1_000_000)
    p.add_argument("--block-size", type=int, default=65_536)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: chains block_size
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1] or None, args.steps, args.device)))
        return
    configs = [(args.block_size, 0), (args.chains // 10, 0), (args.chains // 10, args.block_size),
               (args.chains, args.block_size)]
    print(f"{'chains':>9} {'block':>7} {'peak MiB':>9} {'seconds':>8} {'acc':>5}  ({args.steps} warm-up + "
          f"{args.steps} steps, {args.device})")
    for chains, block in configs:
        out = subprocess.run([sys.executable, __file__, "--one", str(chains), str(block), "--steps", str(args.steps),
                              "--device", args.device], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['chains']:>9} {str(r['block_size'] or '-'):>7} {r['peak_mib']:>9.0f} {r['seconds']:>8.1f} "
              f"{r['acceptance']:>5.2f}")


if __name__ == "__main__":
    main()
