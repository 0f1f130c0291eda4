"""Chain-steps per second of MALA, eager and fused, against the floors of a step and against BlackJAX, side by side.

Every candidate runs the same latent energy ``E(z) = 0.5|z|^2 + U(G(z))`` in one process, interleaved
round by round (best of the rounds: the machine is shared and drifts).  Candidates:

* ``eager floor``: the work no sampler can skip, eagerly: draw the proposal noise, one forward and one
  backward pass (autograd) on a new input;
* ``compiled floor``: the same with forward and backward compiled as one graph
  (``torch.compile(torch.func.grad_and_value(...), fullgraph=True)``), noise drawn eagerly;
* ``eager``: ``MALA(...).run(z0, steps, fuse=False)``, the loop users call (init included, last state kept);
* ``fused``: the same with ``fuse=K``: ``K`` steps per compiled call (:mod:`latentmcmc.samplers.fused`);
  its compile time (first call) is printed apart;
* ``BlackJAX``: ``blackjax.mala`` on the same weights, ``vmap`` over chains and ``lax.scan`` over steps,
  jitted (``step_size`` = eps / 2), if installed (``pip install blackjax``), on the CPU or, with
  ``--device cuda``, on JAX's GPU; float32 products at JAX's "highest" precision like torch's.

    python benchmarks/sampler_throughput.py [--threads 1] [--sizes 16x64 16x1024 128x1024 16x16384]
    python benchmarks/sampler_throughput.py --model dcgan --sizes 128x1024 --device cuda --mode reduce-overhead

``--model mlp`` (default): G: Linear(d, 128) Tanh Linear(128, 64); U: Linear(64, 128) Tanh Linear(128, 1).
``--model dcgan``: a DCGAN-size generator (latent -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3) and critic
(32x32x3 -> 64 -> 128 -> 256 channels, linear head); BlackJAX is skipped (it re-implements the MLP only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import torch
from torch import nn

from latentmcmc import MALA, LatentEnergy
from latentmcmc.samplers.fused import functional_target

EPS = 1e-3


def mlp(latent: int) -> tuple[nn.Module, nn.Module]:
    return (nn.Sequential(nn.Linear(latent, 128), nn.Tanh(), nn.Linear(128, 64)),
            nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 1)))


def dcgan(latent: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN-size generator ``(n, latent) -> (n, 3, 32, 32)`` and critic ``(n, 3, 32, 32) -> (n,)``."""
    generator = nn.Sequential(
        nn.Unflatten(1, (latent, 1, 1)),
        nn.ConvTranspose2d(latent, 512, 4), nn.ReLU(),  # 4x4
        nn.ConvTranspose2d(512, 256, 4, 2, 1), nn.ReLU(),  # 8x8
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.ReLU(),  # 16x16
        nn.ConvTranspose2d(128, 3, 4, 2, 1), nn.Tanh(),  # 32x32
    )
    critic = nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2),  # 16x16
        nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),  # 8x8
        nn.Conv2d(128, 256, 4, 2, 1), nn.LeakyReLU(0.2),  # 4x4
        nn.Flatten(), nn.Linear(256 * 16, 1),
    )
    return generator, critic


def make_energy(latent: int, device: str, model: str) -> LatentEnergy:
    torch.manual_seed(0)
    generator, critic = (dcgan if model == "dcgan" else mlp)(latent)
    return LatentEnergy(generator.to(device), critic.to(device))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds_per_call(fn, seconds: float, device: str) -> float:
    """Seconds per call, from repeated calls filling about ``seconds`` (at least one)."""
    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - t0) / n


def interleaved_best(fns: dict, seconds: float, device: str, rounds: int) -> dict:
    """Fastest seconds per call of each function over alternating rounds (same drift for all)."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], seconds_per_call(fn, seconds / rounds, device))
    return best


def floor(energy: LatentEnergy, z: torch.Tensor, compiled: bool):
    """One call = draw the noise, move to a new input, one forward+backward there (eager, or compiled as one graph)."""
    gen = torch.Generator(device=z.device).manual_seed(0)
    target = functional_target(_as_target(energy))
    value_and_grad = (torch.compile(target.value_and_grad, fullgraph=True, dynamic=False) if compiled
                      else _as_target(energy).value_and_grad)
    current = [z]

    def step():
        xi = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
        current[0] = current[0] + 0.03 * xi
        value_and_grad(current[0])

    return step


def _as_target(energy):
    from latentmcmc.energy import as_target

    return as_target(energy)


def library(energy: LatentEnergy, z0: torch.Tensor, steps: int, fuse, mode: str | bool):
    """One call = ``MALA.run`` of ``steps`` steps from ``z0`` (init included, last state kept)."""
    sampler = MALA(energy, eps=EPS, compile=mode if fuse else False)

    def call():
        sampler.run(z0, steps=steps, record="last", progress=False, seed=0, fuse=fuse)

    return call


def blackjax_mala(energy: LatentEnergy, latent: int, chains: int, steps: int, device: str = "cpu"):
    """One call = ``steps`` jitted BlackJAX MALA steps of every chain, on JAX's device of the same kind as
    ``device`` (None when BlackJAX is not installed or JAX has no such device).  float32 matrix products at
    JAX's "highest" precision, as torch's float32 default (JAX's GPU default would use TF32)."""
    try:
        import blackjax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    try:
        where = jax.devices("gpu" if device.startswith("cuda") else "cpu")[0]
    except RuntimeError:
        return None
    jax.config.update("jax_default_matmul_precision", "highest")
    layers = [m for m in list(energy.generator) + list(energy.critic) if isinstance(m, nn.Linear)]
    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = [(jax.device_put(m.weight.detach().cpu().numpy(), where),
                                               jax.device_put(m.bias.detach().cpu().numpy(), where))
                                              for m in layers]

    def logdensity(z):
        x = jnp.tanh(z @ w1.T + b1) @ w2.T + b2
        u = jnp.tanh(x @ w3.T + b3) @ w4.T + b4
        return -(u[0] + 0.5 * jnp.sum(z ** 2))

    kernel = blackjax.mala(logdensity, step_size=EPS / 2)
    states = [jax.vmap(kernel.init)(jax.device_put(jnp.zeros((chains, latent)), where))]

    @jax.jit
    def many(states, key):
        def body(carry, k):
            new, info = jax.vmap(kernel.step)(jax.random.split(k, chains), carry)
            return new, info.acceptance_rate

        return jax.lax.scan(body, states, jax.random.split(key, steps))

    key = [jax.device_put(jax.random.PRNGKey(0), where)]
    jax.block_until_ready(many(states[0], key[0]))

    def call():
        key[0], sub = jax.random.split(key[0])
        states[0], _ = jax.block_until_ready(many(states[0], sub))

    return call


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[1].strip()
    except Exception:  # noqa: BLE001
        return "n/a"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each flag's default."""


XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
"""XLA_FLAGS that keep BlackJAX's CPU run on one thread, set by ``--threads 1`` unless XLA_FLAGS is set."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (BlackJAX then runs on JAX's GPU)")
    parser.add_argument("--model", choices=["mlp", "dcgan"], default="mlp", help="the model pair (see above)")
    parser.add_argument("--sizes", nargs="+", default=["16x64", "16x1024", "128x1024", "16x16384"],
                        help="latent x chains")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed sampler call")
    parser.add_argument("--block", type=int, default=10, help="steps per fused block")
    parser.add_argument("--mode", default="default", help="torch.compile mode of the fused blocks and the floor")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 also keeps XLA (BlackJAX) on one thread")
    parser.add_argument("--seconds", type=float, default=12.0, help="timing per candidate and size, over all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds; each candidate's best is kept")
    parser.add_argument("--no-blackjax", action="store_true", help="leave BlackJAX out")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.threads == 1 and "XLA_FLAGS" not in os.environ:  # before JAX is imported (in blackjax_mala)
        os.environ["XLA_FLAGS"] = XLA_ONE_THREAD
    dev = args.device
    what = torch.cuda.get_device_name() if dev.startswith("cuda") else f"{torch.get_num_threads()} torch threads"
    print(f"device {dev} ({what}), torch {torch.__version__}, model {args.model}, float32, "
          f"MALA eps {EPS}, {args.steps} steps a call, fused blocks of {args.block}, XLA_FLAGS="
          f"{os.environ.get('XLA_FLAGS', '')!r}; load before: {load()}")
    print(f"{'latent':>6} {'chains':>6} {'eager floor':>12} {'compiled floor':>14} {'eager':>10} {'fused':>10} "
          f"{'BlackJAX':>10} {'fused/cfloor':>12} {'fused/eager':>11} {'fused/BJ':>8} {'eager/BJ':>8} {'compile s':>9}")
    for size in args.sizes:
        latent, chains = (int(v) for v in size.split("x"))
        energy = make_energy(latent, dev, args.model)
        z = torch.randn(chains, latent, device=dev, generator=torch.Generator(device=dev).manual_seed(1))
        fused = library(energy, z, args.steps, args.block, args.mode)
        t0 = time.perf_counter()
        fused()  # compiles
        sync(dev)
        compile_s = time.perf_counter() - t0
        candidates = {"eager floor": floor(energy, z, False), "compiled floor": floor(energy, z, True),
                      "eager": library(energy, z, args.steps, False, False), "fused": fused}
        candidates["compiled floor"]()  # compile outside the timing
        bj = None if (args.no_blackjax or args.model != "mlp") else blackjax_mala(
            energy, latent, chains, args.steps, dev)
        if bj is not None:
            candidates["BlackJAX"] = bj
        best = interleaved_best(candidates, args.seconds, dev, args.rounds)
        per_call = {"eager floor": 1, "compiled floor": 1, "eager": args.steps, "fused": args.steps,
                    "BlackJAX": args.steps}
        rate = {k: chains * per_call[k] / v for k, v in best.items()}
        b = rate.get("BlackJAX")

        def vs_blackjax(x: float) -> str:
            return f"{x / b:8.2f}" if b else "n/a".rjust(8)

        print(f"{latent:6d} {chains:6d} {rate['eager floor']:12.0f} {rate['compiled floor']:14.0f} "
              f"{rate['eager']:10.0f} {rate['fused']:10.0f} {(f'{b:10.0f}' if b else 'n/a'.rjust(10))} "
              f"{rate['fused'] / rate['compiled floor']:12.2f} {rate['fused'] / rate['eager']:11.2f} "
              f"{vs_blackjax(rate['fused'])} {vs_blackjax(rate['eager'])} {compile_s:9.1f}", flush=True)
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
