"""Writes the sample images that ship in samples/mnist: the first N MNIST test digits as PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from latentlink.train.mnist import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="path to mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("samples/mnist"))
    args = parser.parse_args()
    _, x_test = load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(x_test[: args.count]):
        Image.fromarray(pixels, mode="L").save(args.out / f"test_{index:05d}.png", optimize=True)
    print(f"wrote {args.count} images to {args.out}")


if __name__ == "__main__":
    main()
