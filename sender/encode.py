"""The sender's neural work: encode image batches, and decode them locally to predict quality."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.entropy_coding import EntropyTables
from shared.metrics import Quality, to_uint8
from shared.model_dir import ModelFiles
from shared.network_runtime import CompiledNetwork

__all__ = ["BatchEncoder", "QualityMeter"]


class BatchEncoder:
    """Runs the encoder (and the matching decoder, for the expected quality) on uint8 batches."""

    def __init__(self, model: ModelFiles, device: str = "auto") -> None:
        self.model = model
        self.encoder = CompiledNetwork(model.encoder, device)
        self.decoder = CompiledNetwork(model.decoder, device)
        # A decoder with entropy-coding tables was trained on integer latents.
        self.tables = EntropyTables.from_network(model.decoder.network)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Maps (n, 28, 28) uint8 images to (n, latent_dim) float32 latents (integers for coded models)."""
        latents = self.encoder(images.astype(np.float32) / 255.0)
        # + 0.0 turns the -0.0 that rounding gives small negatives into the 0 the receiver decodes.
        return np.round(latents) + 0.0 if self.tables is not None else latents

    def reconstruct(self, latents: np.ndarray) -> np.ndarray:
        """Decodes latents to the uint8 images a receiver will write."""
        return to_uint8(self.decoder(latents))


@dataclass
class QualityMeter:
    """Accumulates squared error over batches of uint8 images."""

    squared_error: float = 0.0
    pixels: int = 0
    images: int = 0

    def add(self, original: np.ndarray, reconstructed: np.ndarray) -> None:
        diff = (original.astype(np.float64) - reconstructed.astype(np.float64)) / 255.0
        self.squared_error += float(np.sum(diff * diff))
        self.pixels += diff.size
        self.images += len(original)

    def result(self) -> Quality | None:
        if not self.pixels:
            return None
        return Quality.from_mse(self.squared_error / self.pixels)
