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
from scipy.special import erfc

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.train.context_prior import SCALES
from latentlink.train.integer_export import gaussian_tables, log_thresholds
from latentlink.train.mnist import load_mnist

GRIDS = [(4, 48), (8, 48), (4, 96), (8, 96), (16, 96), (16, 192)]  # (mean bins, scale levels from 0.11 to 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000, help="test images used")
    args = parser.parse_args()
    _, x_test = load_mnist(args.data)
    encoder = BatchEncoder(load_model_dir(quality_model_dir(args.quality)), "cpu")
    latents = encoder.encode(x_test[: args.images]).astype(np.float64)
    tables = encoder.tables
    out = tables.network.outputs(latents[:, None, :])[:, 0, :] / 2.0**tables.fraction_bits
    means, log_scales = out[:, : tables.latent], out[:, tables.latent :]
    print(f"q{args.quality}, {args.images} test images: shipped tables {tables.bits(latents).mean():.2f} bits/image")
    print("| mean bins x scale levels | bits/image | table bytes |\n|---|---|---|")
    for bins, levels in GRIDS:
        scales = np.exp(np.linspace(math.log(SCALES[0]), math.log(SCALES[-1]), levels))
        grid = gaussian_tables(scales, (np.arange(bins) + 0.5) / bins)
        level = np.searchsorted(log_thresholds(scales) / 2.0**tables.fraction_bits, log_scales, side="right")
        steps = np.floor(means * bins)
        whole = np.floor(steps / bins)
        rows = (steps - whole * bins).astype(np.int64) * levels + level
        bits = grid.code_length(latents - whole, rows).sum(1).mean()
        print(f"| {bins} x {levels} | {bits:.2f} | {grid.pmfs.nbytes:,} |")
    scale = np.exp(np.clip(log_scales, math.log(SCALES[0]), math.log(SCALES[-1])))
    distance = np.abs(latents - means)
    mass = 0.5 * (erfc(-(0.5 - distance) / (scale * math.sqrt(2))) - erfc(-(-0.5 - distance) / (scale * math.sqrt(2))))
    print(f"| exact means and scales (no tables) | {(-np.log2(np.maximum(mass, 1e-9))).sum(1).mean():.2f} | - |")


if __name__ == "__main__":
    main()
