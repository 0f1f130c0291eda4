"""The DCGAN example's published discriminator as it is, fine-tuned on its frozen generator, and fitted anew.

Discriminator rejection sampling (Azadi et al. 2019) fine-tunes a GAN's final discriminator on the frozen
generator's samples, because the discriminator of the last training step is not the best logistic
discriminator for the last generator.  This runs the three critics side by side on the DCGAN of
``examples/dcgan_digits.py`` (trained here first unless ``--dcgan`` holds one):

* ``published``: ``d.pt2`` as it is, read as a probability (``--critic-output probability``);
* ``fine-tuned``: ``latentmcmc fit-critic --init d.pt2 --init-output probability`` on the 1,797 digits;
* ``fitted anew``: ``latentmcmc fit-critic`` with its default network (an MLP on the flat 64-vectors).

For each: the held-out accuracy, log-loss and calibration error of the critic (the published one measured
on the same held-out split, the fit's step 0), then ``latentmcmc compare --methods prior,mala`` at beta 1
and 3 (2,000 samples, 400 model passes each) in the shipped digit classifier's features.

    python benchmarks/dcgan_critics.py --out runs/dcgan-critics
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("fd", "kid", "precision", "recall", "coverage", "is")


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "latentmcmc", "--threads", "2", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dcgan-critics"))
    parser.add_argument("--dcgan", type=Path, default=None, help="a folder written by examples/dcgan_digits.py")
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--betas", nargs="+", type=float, default=[1.0, 3.0])
    parser.add_argument("--budget", type=int, default=400)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dcgan = args.dcgan or out / "dcgan"
    if not (dcgan / "g.pt2").exists():
        subprocess.run([sys.executable, str(HERE.parent / "examples" / "dcgan_digits.py"), "--steps", "3000",
                        "--out", str(dcgan)], check=True)
    common = ["--generator", str(dcgan / "g.pt2"), "--latent-shape", "32"]
    timings = {}
    for name, extra in (("fine-tuned", ["--init", str(dcgan / "d.pt2"), "--init-output", "probability"]),
                        ("fitted anew", [])):
        t0 = time.perf_counter()
        cli("fit-critic", *common, "--real", str(dcgan / "reference.npz"), "--steps", str(args.fit_steps), "-q",
            *extra, "--out", str(out / name.replace(" ", "-")))
        timings[name] = time.perf_counter() - t0
    fits = {name: json.loads((out / name.replace(" ", "-") / "fit.json").read_text())
            for name in ("fine-tuned", "fitted anew")}
    critics = {"published": (dcgan / "d.pt2", "probability", fits["fine-tuned"]["held_out_at_start"]),
               "fine-tuned": (out / "fine-tuned" / "critic.pt2", "logit", fits["fine-tuned"]["held_out"]),
               "fitted anew": (out / "fitted-anew" / "critic.pt2", "logit", fits["fitted anew"]["held_out"])}
    rows = []
    for name, (critic, kind, held) in critics.items():
        for beta in args.betas:
            folder = out / f"compare-{name.replace(' ', '-')}-beta{beta:g}"
            cli("compare", *common, "--critic", str(critic), "--critic-output", kind, "--data-shape", "1,8,8",
                "--features", str(dcgan / "features.pt2"), "--classifier", str(dcgan / "classifier.pt2"),
                "--reference", str(dcgan / "reference.npz"), "--methods", "prior,mala", "--beta", str(beta),
                "--budget", str(args.budget), "--seed", "0", "-q", "--no-figures", "--out", str(folder))
            methods = json.loads((folder / "compare.json").read_text())["methods"]
            rows.append((name, held, beta, methods))
    load = os.getloadavg()[0]
    print(f"\nload average {load:.2f}; fits: " + ", ".join(f"{k} {v:.0f} s (step {fits[k]['step']})"
                                                       for k, v in timings.items()))
    print("| critic | held-out accuracy / log-loss / calibration | beta | samples | "
          + " | ".join(METRICS) + " |")
    print("|---|---|---|---|" + "---|" * len(METRICS))
    for name, held, beta, methods in rows:
        for method in methods.values():
            q = method.get("quality") or {}
            cells = " | ".join("n/a" if q.get(m) is None else f"{q[m]:.3f}" for m in METRICS)
            print(f"| {name} | {held['accuracy']:.3f} / {held['log_loss']:.3f} / {held['calibration_error']:.3f} "
                  f"| {beta:g} | {method['method']} | {cells} |")
    (out / "summary.json").write_text(json.dumps({"rows": rows, "fit_seconds": timings, "load": load}, indent=2,
                                                 default=str) + "\n")


if __name__ == "__main__":
    main()
