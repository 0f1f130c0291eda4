"""Normalizing-flow libraries side by side at FlEx2MCMC's sizes: zuko vs normflows (RealNVP-style coupling flows).

For latent sizes 2, 16 and 128: a RealNVP flow of 4 coupling layers with hidden width 64 from each
library, timed (best of several interleaved rounds, one thread) on what FlEx2MCMC does with it: one
Adam step of weighted maximum likelihood on a batch of 1,024 points, and sampling + log density of
10,000 points (the i-SIR candidates of 1,000 chains x 10).  nflows is not compared: its last release
(0.14) dates from 2020.

    python benchmarks/flow_libraries.py
"""

from __future__ import annotations

import os
import time

import torch

torch.set_num_threads(1)


def zuko_flow(d: int):
    import zuko

    flow = zuko.flows.RealNVP(features=d, transforms=4, hidden_features=[64, 64])
    return flow, (lambda n: flow().sample((n,))), (lambda x: flow().log_prob(x))


def normflows_flow(d: int):
    import normflows as nf

    base = nf.distributions.DiagGaussian(d, trainable=False)
    mask = (torch.arange(d) % 2).float()
    layers = []
    for i in range(4):
        s = nf.nets.MLP([d, 64, 64, d], init_zeros=True)
        t = nf.nets.MLP([d, 64, 64, d], init_zeros=True)
        layers.append(nf.flows.MaskedAffineFlow(mask if i % 2 == 0 else 1 - mask, t, s))
    flow = nf.NormalizingFlow(base, layers)
    return flow, (lambda n: flow.sample(n)[0]), (lambda x: flow.log_prob(x))


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.2f}, torch {torch.__version__}, 1 thread")
    print(f"{'d':>4} {'library':>10} {'train step (ms)':>16} {'sample+logp 10k (ms)':>21}")
    for d in (2, 16, 128):
        x = torch.randn(1024, d)
        w = torch.softmax(torch.randn(1024), 0)
        built = {name: make(d) for name, make in (("zuko", zuko_flow), ("normflows", normflows_flow))}
        results = {name: [[], []] for name in built}
        for _ in range(5):  # interleaved rounds
            for name, (flow, sample, log_prob) in built.items():
                opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

                def step():
                    opt.zero_grad()
                    loss = -(w * log_prob(x)).sum()
                    loss.backward()
                    opt.step()

                def draw():
                    with torch.no_grad():
                        y = sample(10_000)
                        log_prob(y)

                results[name][0].append(best(step, 3))
                results[name][1].append(best(draw, 2))
        for name, (train, draw) in results.items():
            print(f"{d:>4} {name:>10} {1e3 * min(train):>16.2f} {1e3 * min(draw):>21.2f}")


if __name__ == "__main__":
    main()
