"""The sender's neural work: encode image batches, and decode them locally to predict quality."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """Squared error per image name, so an image resent after a reconnect counts once."""

    per_image: dict[str, tuple[float, int]] = field(default_factory=dict)

    def add(self, names: list[str], original: np.ndarray, reconstructed: np.ndarray) -> None:
        diff = (original.astype(np.float64) - reconstructed.astype(np.float64)) / 255.0
        errors = np.sum(diff * diff, axis=tuple(range(1, diff.ndim)))
        pixels = int(np.prod(diff.shape[1:]))
        self.per_image.update((name, (float(e), pixels)) for name, e in zip(names, errors, strict=True))

    def result(self) -> Quality | None:
        if not self.per_image:
            return None
        squared_error = sum(e for e, _ in self.per_image.values())
        return Quality.from_mse(squared_error / sum(n for _, n in self.per_image.values()))
