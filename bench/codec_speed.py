"""Encoder and decoder throughput (images/s) of the shipped models on this machine's CPU.

Runs each model half through the same compiled runtime the sender and receiver
use, at several batch sizes, over the 10,000 MNIST test images; best of 3 runs.

    python bench/codec_speed.py --data ../shared/data/mnist.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.train.mnist import load_mnist

REPO = Path(__file__).resolve().parent.parent


def images_per_second(network: CompiledNetwork, data: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Best-of-`repeats` throughput of running `data` through `network` in batches."""
    network(data[:batch])  # warm-up: build the graph once
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(data), batch):
            network(data[first : first + batch])
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256, 1024])
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    args = parser.parse_args()
    _, x_test = load_mnist(args.data)
    images = x_test.astype(np.float32) / 255.0
    print(f"images/s on {args.device}, {len(images)} MNIST test images, best of 3\n")
    print("| model | batch | encode img/s | decode img/s |")
    print("|---|---|---|---|")
    for folder in sorted((REPO / "models").iterdir()):
        if not (folder / "decoder.lln").is_file():
            continue
        model = load_model_dir(folder)
        encoder, decoder = CompiledNetwork(model.encoder, args.device), CompiledNetwork(model.decoder, args.device)
        latents = encoder(images)
        for batch in args.batches:
            data = images if batch > 1 else images[:1000]
            enc = images_per_second(encoder, data, batch)
            dec = images_per_second(decoder, latents[: len(data)], batch)
            print(f"| {folder.name} | {batch} | {enc:,.0f} | {dec:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
