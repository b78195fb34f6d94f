"""Rebuilds the tables of context-prior models from their integer networks (train/context_prior.fit_tables).

The tables depend only on the integer network's outputs, so this needs no float weights: it re-derives them
for the current MEAN_BINS and scale range, writes the decoder again (a new digest) and updates the card's
table bits. Run after changing how tables are built:

    LATENTLINK_MNIST=../shared/data/mnist.npz python scripts/refit_context_tables.py models/q1 models/q2 ...
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from latentlink.shared.model_dir import load_model_dir, save_model_dir
from latentlink.shared.network_runtime import load_network
from latentlink.train.context_prior import fit_tables, mean_bits
from latentlink.train.mnist import load_mnist


def refit(folder: Path, x_train: np.ndarray, x_test: np.ndarray) -> None:
    model = load_model_dir(folder)
    if not model.decoder.network.HasField("context_prior"):
        raise SystemExit(f"{folder}: no context prior")
    encode = load_network(model.encoder, "cpu")

    def latents(images: np.ndarray) -> np.ndarray:
        return np.round(encode(images.astype(np.float32) / 255.0).astype(np.float64))

    decoder = copy.deepcopy(model.decoder.network)
    decoder.context_prior.CopyFrom(fit_tables(decoder.context_prior, latents(x_train)))
    if decoder == model.decoder.network:
        print(f"{folder}: tables unchanged")
        return
    test = latents(x_test)
    before, after = mean_bits(model.decoder.network.context_prior, test), mean_bits(decoder.context_prior, test)
    card = {
        **model.card,
        "test": {**model.card["test"], "table_bits_per_image": after},
        "tables_command": f"python scripts/refit_context_tables.py {folder}",
    }
    saved = save_model_dir(folder, model.encoder.network, decoder, card)
    print(
        f"{folder}: {before:.2f} -> {after:.2f} bits per test image; decoder {model.decoder.size_bytes:,} -> "
        f"{saved.decoder.size_bytes:,} B ({saved.decoder.digest[:12]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST)")
    args = parser.parse_args()
    x_train, x_test = load_mnist(args.data)
    for folder in args.folders:
        refit(folder, x_train, x_test)


if __name__ == "__main__":
    main()
