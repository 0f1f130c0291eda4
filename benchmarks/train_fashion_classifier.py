"""A Fashion-MNIST classifier whose features and logits measure generated images (FD, KID, precision/recall,
density/coverage, Inception Score, class histograms): ``features.pt2`` and ``classifier.pt2`` (torch.export).

Needs Debian's ``dataset-fashion-mnist`` (IDX files under /usr/share/datasets/fashion-mnist); exits with a
message when it is absent.  A small CNN (two convolutions, a 128-unit feature layer, no batch statistics),
Adam, ``--epochs`` passes over the 60,000 training images; test accuracy on the 10,000 test images.  Pixels
in [0, 1] (``--range 0,1``) or [-1, 1] (``--range=-1,1``: with the equals sign, as the value starts with a minus), as the generators it will judge produce them.

    python benchmarks/train_fashion_classifier.py --out runs/fashion
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

FASHION = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist(split: str, value_range=(0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 1, 28, 28)`` in ``value_range`` and labels of the ``train`` or ``t10k`` split."""
    from latentmcmc.datafiles import read_data, read_labels

    return (read_data(FASHION / f"{split}-images-idx3-ubyte.gz", value_range),
            read_labels(FASHION / f"{split}-labels-idx1-ubyte.gz"))


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.features(x))


def export(module: nn.Module, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module.eval(), (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/fashion"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--range", default="0,1", help="pixel range of the images it will judge: 0,1 or -1,1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not FASHION.is_dir():
        sys.exit(f"Fashion-MNIST is not installed ({FASHION}): apt-get install dataset-fashion-mnist")
    lo, hi = (float(v) for v in args.range.split(","))
    torch.manual_seed(args.seed)
    x, y = fashion_mnist("train", (lo, hi))
    x_test, y_test = fashion_mnist("t10k", (lo, hi))
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 128):
            pick = order[i:i + 128]
            loss = nn.functional.cross_entropy(model(x[pick]), y[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((torch.cat([model(x_test[i:i + 1000]).argmax(1) for i in range(0, 10000, 1000)]) == y_test)
                         .double().mean())
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, args.out / "classifier.pt2")
    export(model.features, args.out / "features.pt2")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.epochs} epochs in {time.perf_counter() - t0:.0f} s; test "
          f"accuracy {accuracy:.4f}; wrote {args.out}/classifier.pt2 and features.pt2")


if __name__ == "__main__":
    main()
