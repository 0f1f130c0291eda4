"""Train the digit classifier shipped as latentmcmc/assets/digits_classifier.pt and report its accuracy.

scikit-learn's 8x8 digits, scaled to [-1, 1]; a stratified 80/20 split (seed 0); Adam 1e-3, 150
epochs of full-batch training with small random shifts as augmentation.  Prints held-out accuracy.

    python benchmarks/train_digits_classifier.py [--out latentmcmc/assets/digits_classifier.pt]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from latentmcmc.metrics import DigitClassifier
from latentmcmc.training import load_dataset


def stratified_split(labels: torch.Tensor, test_fraction: float, g: torch.Generator):
    train, test = [], []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train), torch.cat(test)


def shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel (pad with the background value -1)."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
    return padded[..., dy : dy + 8, dx : dx + 8]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="latentmcmc/assets/digits_classifier.pt")
    p.add_argument("--epochs", type=int, default=150)
    args = p.parse_args()
    data = load_dataset("digits")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    train_idx, test_idx = stratified_split(data.labels, 0.2, g)
    x_train, y_train = data.x[train_idx], data.labels[train_idx]
    x_test, y_test = data.x[test_idx], data.labels[test_idx]
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(x_train), generator=g).split(128):
            loss = F.cross_entropy(model(shift(x_train[batch], g)), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc_train = float((model(x_train).argmax(1) == y_train).float().mean())
        acc_test = float((model(x_test).argmax(1) == y_test).float().mean())
    print(f"train accuracy {acc_train:.4f} ({len(x_train)} images), held-out accuracy {acc_test:.4f} ({len(x_test)} images)")
    torch.save({"state_dict": model.state_dict(), "held_out_accuracy": acc_test, "train_size": len(x_train),
                "test_size": len(x_test)}, args.out)


if __name__ == "__main__":
    main()
