"""Runs one model half on batches with TensorFlow, on the CPU or a GPU."""

from __future__ import annotations

import numpy as np

from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_format import NetworkInfo
from latentlink.shared.protocol import DECODE_BUDGET_ELEMENTS
from latentlink.shared.tf_import import tensorflow

__all__ = ["DEVICES", "CompiledNetwork", "decode_images", "decode_photo", "resolve_device"]

DEVICES = ("auto", "cpu", "gpu")


def resolve_device(device: str) -> str:
    """Maps auto/cpu/gpu to a TensorFlow device name; 'gpu' fails when none is visible."""
    if device not in DEVICES:
        raise ValueError(f'unknown device "{device}" (choose from {", ".join(DEVICES)})')
    tf = tensorflow()
    gpus = tf.config.list_logical_devices("GPU")
    if device == "gpu" and not gpus:
        raise RuntimeError("--device gpu was asked for, but TensorFlow sees no GPU (use --device cpu or auto)")
    if device == "cpu" or not gpus:
        return "/CPU:0"
    return gpus[0].name


class CompiledNetwork:
    """A model half compiled once into a graph that takes any batch size without retracing."""

    def __init__(self, info: NetworkInfo, device: str = "auto") -> None:
        tf = tensorflow()
        from latentlink.shared.keras_bridge import keras_from_network

        self.info = info
        self.device = resolve_device(device)
        with tf.device(self.device):
            self.model = keras_from_network(info)
        spec = tf.TensorSpec([None, *(d or None for d in info.input_shape)], tf.float32)  # 0: any height/width
        # Traced once, here, for every batch size: calls never retrace, even from several threads at once.
        self.function = tf.function(self._forward, input_signature=[spec])
        self._run = self.function.get_concrete_function()

    def _forward(self, batch):
        with tensorflow().device(self.device):
            return self.model(batch, training=False)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Runs a float32 batch of shape (n, *input_shape) through the network."""
        batch = np.asarray(batch, np.float32)
        if len(batch.shape) != len(self.info.input_shape) + 1 or any(
            d and d != n for d, n in zip(self.info.input_shape, batch.shape[1:], strict=True)
        ):
            raise ValueError(f"batch shape {batch.shape[1:]} does not match input {self.info.input_shape}")
        return self._run(tensorflow().constant(batch)).numpy()


def decode_images(decoder: CompiledNetwork, latents: np.ndarray) -> np.ndarray:
    """Decodes a batch of latents to the uint8 images a receiver writes (the one place that does).

    A batch whose activations would pass DECODE_BUDGET_ELEMENTS is decoded in
    slices, so that memory stays bounded whatever decoder a sender brought.
    """
    latents = np.asarray(latents, np.float32)
    step = max(1, DECODE_BUDGET_ELEMENTS // max(1, decoder.info.activations))
    if len(latents) <= step:
        return to_uint8(decoder(latents))
    return np.concatenate([to_uint8(decoder(latents[i : i + step])) for i in range(0, len(latents), step)])


def decode_photo(decoder: CompiledNetwork, latents, shape: tuple[int, int, int]) -> np.ndarray:
    """Decodes one image of any size from its PhotoLatents to the uint8 image a receiver writes (the one place)."""
    from latentlink.shared.photo_codec import to_image

    return to_image(decoder(latents.y[None].astype(np.float32))[0], *shape)
