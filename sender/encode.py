"""The sender's neural work: encode image batches, and decode them locally to predict quality."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.metrics import Quality
from latentlink.shared.model_dir import ModelFiles
from latentlink.shared.network_runtime import CompiledNetwork, decode_images, resolve_device

__all__ = ["BatchEncoder", "QualityMeter"]


class BatchEncoder:
    """Runs the encoder (and the matching decoder, for the expected quality) on uint8 batches.

    TensorFlow is imported and the networks are built in a background thread, so
    that the caller can connect, handshake and transfer the model meanwhile; the
    first `encode` waits for it. `device="gpu"` is checked at once.
    """

    def __init__(self, model: ModelFiles, device: str = "auto") -> None:
        self.model = model
        # A decoder with entropy-coding tables was trained on integer latents.
        self.tables = EntropyTables.from_network(model.decoder.network)
        if device == "gpu":
            resolve_device(device)  # raises RuntimeError now rather than at the first batch
        self._networks: Future[tuple[CompiledNetwork, CompiledNetwork]] = Future()
        threading.Thread(target=self._build, args=(device,), daemon=True, name="build-networks").start()

    def _build(self, device: str) -> None:
        try:
            self._networks.set_result(
                (CompiledNetwork(self.model.encoder, device), CompiledNetwork(self.model.decoder, device))
            )
        except BaseException as exc:  # re-raised by the first encode
            self._networks.set_exception(exc)

    @property
    def device(self) -> str:
        """The TensorFlow device the networks run on (waits until they are built)."""
        return self._networks.result()[0].device

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Maps (n, 28, 28) uint8 images to (n, latent_dim) float32 latents (integers for coded models)."""
        latents = self._networks.result()[0](images.astype(np.float32) / 255.0)
        # + 0.0 turns the -0.0 that rounding gives small negatives into the 0 the receiver decodes.
        return np.round(latents) + 0.0 if self.tables is not None else latents

    def reconstruct(self, latents: np.ndarray) -> np.ndarray:
        """Decodes latents to the uint8 images a receiver will write."""
        return decode_images(self._networks.result()[1], latents)


@dataclass
class QualityMeter:
    """Predicted squared error per image name, so an image resent after a reconnect counts once.

    Decoding on the sender costs as much as on the receiver, so past the first
    `exact_images` only one batch in `sample_every` is measured: a systematic
    sample, which `result` reports as an estimate over `sampled` images.
    """

    exact_images: int = 1024
    sample_every: int = 16
    per_image: dict[str, tuple[float, int]] = field(default_factory=dict)
    offered: int = 0  # images offered to `wants`
    batches: int = 0  # batches offered past the exact part

    def wants(self, count: int) -> bool:
        """Whether to measure the next batch of `count` images."""
        self.offered += count
        if self.offered - count < self.exact_images:
            return True
        self.batches += 1
        return self.batches % self.sample_every == 0

    @property
    def sampled(self) -> int:
        """How many images the prediction covers."""
        return len(self.per_image)

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
