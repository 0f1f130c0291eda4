"""What a fused block costs to compile in a new process: with an empty compile cache, and with a warm one.

torch's inductor keeps on-disk caches (the FX graph cache and the AOTAutograd cache, on by default) in
``TORCHINDUCTOR_CACHE_DIR`` (default ``/tmp/torchinductor_$USER``).  This runs the same fused MALA run
(the throughput benchmark's MLP model, latent 16, 1,024 chains, blocks of 10 steps, 20 steps) in fresh
processes: the first with an empty cache folder, then ``--repeats`` more with the folder it filled, and
prints each process's time to the end of the run (the first block's compile included) beside the same
run unfused, also in a fresh process.

    python benchmarks/compile_cache.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time
t0 = time.perf_counter()
import torch
from latentmcmc import MALA
sys.path.insert(0, {here!r})
from sampler_throughput import make_energy
torch.set_num_threads(1)
energy = make_energy(16, "cpu", "mlp")
z0 = torch.randn(1024, 16, generator=torch.Generator().manual_seed(0))
t1 = time.perf_counter()
MALA(energy, eps=1e-3).run(z0, steps=20, record="last", progress=False, seed=0, fuse={fuse})
print(f"{{t1 - t0:.2f}} {{time.perf_counter() - t1:.2f}}")
"""


def child(fuse: str, cache: str) -> tuple[float, float]:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=here, fuse=fuse)], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        t = time.perf_counter()
        imports, run = child("False", cache)
        print(f"eager, new process:            import + model {imports:5.2f} s, run {run:6.2f} s")
        imports, run = child("10", cache)
        print(f"fused, empty cache:            import + model {imports:5.2f} s, run {run:6.2f} s")
        for k in range(args.repeats):
            imports, run = child("10", cache)
            print(f"fused, warm cache (process {k + 2}): import + model {imports:5.2f} s, run {run:6.2f} s")
        print(f"({time.perf_counter() - t:.0f} s in all)")


if __name__ == "__main__":
    main()
