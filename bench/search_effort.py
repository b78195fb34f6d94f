"""Sender-side search (`sender --effort N`): bitstream bytes, quality and sender CPU per image, per effort.

    python bench/search_effort.py --data ../shared/data/mnist.npz --images 1000

Latents are coded with the shipped decoder's exact tables (ideal code length of
the integer tables; the ANS stream is within a few bytes per batch of it) and
quality is measured on the 8-bit images the receiver would write.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from latentlink.sender.encode import BatchEncoder
from latentlink.sender.search import EFFORTS
from latentlink.shared.metrics import quality
from latentlink.shared.model_dir import QUALITIES, load_model_dir, quality_model_dir
from latentlink.shared.network_runtime import decode_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="mnist.npz")
    parser.add_argument("--images", type=int, default=1000, help="test images used")
    parser.add_argument("--qualities", type=int, nargs="+", default=[2, 4], choices=QUALITIES)
    args = parser.parse_args()
    with np.load(args.data) as data:
        images = data["x_test"][: args.images]
    print("| model | effort | bitstream B/image | MSE | PSNR | sender CPU ms/image |")
    print("|---|---|---|---|---|---|")
    for q in args.qualities:
        encoder = BatchEncoder(load_model_dir(quality_model_dir(q)), "cpu")
        encoder.encode(images[:8])  # builds the networks
        for effort in EFFORTS:
            start = time.process_time()
            latents = np.concatenate([encoder.encode(images[i : i + 512], effort) for i in range(0, len(images), 512)])
            cpu_ms = (time.process_time() - start) / len(images) * 1e3
            measured = quality(images, decode_images(encoder.decoder_network, latents))
            bytes_per_image = encoder.tables.bits(latents).mean() / 8
            row = (f"q{q}", effort, f"{bytes_per_image:.2f}", f"{measured.mse:.5f}", f"{measured.psnr:.2f} dB")
            print("| " + " | ".join(map(str, row)) + f" | {cpu_ms:.2f} |")


if __name__ == "__main__":
    main()
