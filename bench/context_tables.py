"""How finely a context prior's tables must resolve the predicted means and scales.

Runs a shipped rung's integer network on test latents and codes them under tables built with several mean
bins and scale grids (the network unchanged), against the ideal code length of the exact predicted Gaussians.

    python bench/context_tables.py --data ../shared/data/mnist.npz --quality 2
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.train.context_prior import SCALES, gaussian_row_bits, mean_bits, with_tables
from latentlink.train.mnist import load_mnist

GRIDS = [(4, 48), (8, 48), (4, 96), (8, 96), (16, 96), (16, 192)]  # (mean bins, scale levels from 0.11 to 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000, help="test images used")
    args = parser.parse_args()
    _, x_test = load_mnist(args.data)
    model = load_model_dir(quality_model_dir(args.quality))
    encoder = BatchEncoder(model, "cpu")
    latents = encoder.encode(x_test[: args.images]).astype(np.float64)
    prior = model.decoder.network.context_prior
    print(f"q{args.quality}, {args.images} test images: shipped tables {mean_bits(prior, latents):.2f} bits/image")
    print("| mean bins x scale levels | bits/image | table bytes |\n|---|---|---|")
    for bins, levels in GRIDS:
        grid = with_tables(prior, np.exp(np.linspace(math.log(SCALES[0]), math.log(SCALES[-1]), levels)), bins)
        table_bytes = len(grid.tables.pmfs.data)
        print(f"| {bins} x {levels} | {mean_bits(grid, latents):.2f} | {table_bytes:,} |")
    out = encoder.tables.network.outputs(latents[:, None, :])[:, 0, :] / 2.0**prior.fraction_bits
    ideal = np.asarray(gaussian_row_bits(latents, out[:, : latents.shape[1]], out[:, latents.shape[1] :])).mean()
    print(f"| exact means and scales (no tables) | {ideal:.2f} | - |")


if __name__ == "__main__":
    main()
