"""Reproduces the seed's Table 2: the seed MLP at k = 64, 50, 36, 22 beside PCA and our models.

Trains the seed architecture (784-128-k-128-784, sigmoid) twice per width: with
RMSprop, the seed's optimizer, and with Adam; fits PCA with the same k as the
linear baseline; evaluates the shipped models. All figures are on the 10,000
MNIST test images, measured on 8-bit rounded reconstructions.

    python bench/reproduce_table2.py --data ../shared/data/mnist.npz
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.metrics import Quality, quality, to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.train.cli import TrainConfig, evaluate, train_autoencoder
from latentlink.train.mnist import load_mnist

SEED_TABLE2 = {64: 0.011, 50: 0.012, 36: 0.013, 22: 0.014}  # "RMSE" in the note; really MSE
REPO = Path(__file__).resolve().parent.parent


def pca_quality(x_train: np.ndarray, x_test: np.ndarray, k: int) -> Quality:
    """Best linear k-dimensional code: project on the top-k principal components."""
    train = x_train.reshape(len(x_train), -1).astype(np.float64) / 255.0
    test = x_test.reshape(len(x_test), -1).astype(np.float64) / 255.0
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[:k]
    recon = (test - mean) @ basis.T @ basis + mean
    return quality(x_test, to_uint8(np.clip(recon, 0, 1)).reshape(x_test.shape))


def shipped_quality(folder: Path, x_test: np.ndarray) -> Quality:
    """Runs a shipped model folder through the sender's encoder and the portable-format runtime."""
    codec = BatchEncoder(load_model_dir(folder), "cpu")  # rounds the latents of rate-distortion models
    return quality(x_test, codec.reconstruct(codec.encode(x_test)))


def _cell(q: Quality) -> str:
    return f"{q.mse:.4f} / {q.rmse:.4f} / {q.psnr:.2f} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--widths", type=int, nargs="*", default=list(SEED_TABLE2), help="none: shipped models only")
    parser.add_argument("--rmsprop-epochs", type=int, default=60)
    parser.add_argument("--adam-epochs", type=int, default=30)
    args = parser.parse_args()
    x_train, x_test = load_mnist(args.data)

    runs = {
        "RMSprop": TrainConfig(
            family="seed", epochs=args.rmsprop_epochs, batch_size=128, learning_rate=0.02, optimizer="rmsprop"
        ),
        "Adam": TrainConfig(
            family="seed", epochs=args.adam_epochs, batch_size=64, learning_rate=0.003, optimizer="adam"
        ),
    }
    print("MSE / RMSE / PSNR on the 10,000 test images (8-bit outputs)\n")
    print("| k | seed note (MSE) | ours, RMSprop | ours, Adam | PCA |")
    print("|---|---|---|---|---|")
    for k in args.widths:
        cells = []
        for config in runs.values():
            start = time.perf_counter()
            model, _ = train_autoencoder(replace(config, latent_dim=k), x_train, progress=False)
            q, _, _ = evaluate(model, x_test)
            cells.append(f"{_cell(q)} ({config.epochs} ep, {time.perf_counter() - start:.0f} s)")
        cells.append(_cell(pca_quality(x_train, x_test, k)))
        print(f"| {k} | {SEED_TABLE2.get(k, '-')} | {' | '.join(cells)} |", flush=True)
    print()
    print("| shipped model | MSE | RMSE | PSNR |")
    print("|---|---|---|---|")
    for folder in sorted((REPO / "models").iterdir()):
        if (folder / "decoder.lln").is_file():
            q = shipped_quality(folder, x_test)
            print(f"| models/{folder.name} | {q.mse:.5f} | {q.rmse:.4f} | {q.psnr:.2f} dB |")


if __name__ == "__main__":
    main()
