"""Draws docs/reconstructions.png: sample digits beside each shipped model's reconstructions."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.image_io import read_image
from latentlink.shared.model_dir import load_model_dir

REPO = Path(__file__).resolve().parent.parent
SCALE, LABEL_WIDTH = 3, 170


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reconstructions.png")
    parser.add_argument("--models", nargs="+", default=["q2", "q4", "q5", "conv-k64", "seed-k64"])
    args = parser.parse_args()
    samples = sorted((REPO / "samples" / "mnist").glob("*.png"))[: args.count]
    originals = np.stack([read_image(p, (28, 28)) for p in samples])
    rows = [("original", originals)]
    for name in args.models:
        model = load_model_dir(REPO / "models" / name)
        codec = BatchEncoder(model, "cpu")
        bits = model.card.get("test", {}).get("table_bits_per_image")
        size = f"~{bits / 8:.0f} B/image" if bits else f"{4 * model.latent_dim} B float32"
        rows.append((f"{name} ({size})", codec.reconstruct(codec.encode(originals))))
    cell = 28 * SCALE + 4
    canvas = Image.new("L", (LABEL_WIDTH + cell * len(samples), cell * len(rows)), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        draw.text((6, r * cell + cell // 2 - 6), label, fill=0)
        for c, pixels in enumerate(images):
            tile = Image.fromarray(pixels, mode="L").resize((28 * SCALE, 28 * SCALE), Image.Resampling.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + c * cell + 2, r * cell + 2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
