"""Sender-side search for photo models (`--effort` with a photo model): better integer latents for one image.

The decoder and its tables are fixed, so the sender may send whichever
integer y it likes; plain rounding of the encoder's output is one choice,
rarely the best. This search minimises what the model was trained on, bits
per pixel + lambda x 255^2 x MSE, for the one image at hand, by gradient
descent on y through the decoder with stochastic Gumbel annealing (Yang,
Bamler & Mandt 2020, "Improving inference for neural image compression"):
each element is a soft, random mix of the integers either side of it, the mix
hardening as the temperature falls. The rate is the exact code length of the
tables, interpolated between integers (exact at the integers); z, and so
each element's table and mean, stays the encoder's (for a mean-scale model the
search moves y less its mean, which the synthesis gets back added; with a
checkerboard context the encoder searches twice: all of y, then, the anchors
kept, the rest under the rows and means the context gives). Every few steps the rounded y is
scored exactly, and the best seen (plain rounding included) is what is sent:
never worse than rounding for that cost. It runs in TensorFlow (gradients),
on the sender's GPU when there is one.
"""

from __future__ import annotations

import math

import numpy as np

from latentlink.sender.annealing import LEARNING_RATE, annealed_step, is_scored, temperature_at
from latentlink.shared.model_format import NetworkInfo
from latentlink.shared.photo_codec import PhotoTables

__all__ = ["SEARCH_STEPS", "PhotoSearch", "search_weight"]

SEARCH_STEPS = {0: 0, 1: 40, 2: 120}  # gradient steps per image for each --effort


class PhotoSearch:
    """Searches one image's y under a photo model's fixed decoder and tables."""

    def __init__(self, decoder: NetworkInfo, tables: PhotoTables, lmbda: float, device: str = "auto") -> None:
        from latentlink.shared.keras_bridge import keras_from_network
        from latentlink.shared.network_runtime import resolve_device
        from latentlink.shared.tf_import import tensorflow

        tf = tensorflow()
        self._tf = tf
        self._device = resolve_device(device)
        with tf.device(self._device):
            self.synthesis = keras_from_network(decoder)
        self.tables = tables
        self.weight = lmbda * 255.0**2  # of the MSE (in [0, 1] units) against bits per pixel
        scales = tables.scales
        self._lengths = tf.constant(scales.symbol_bits.astype(np.float32))  # read only within each row's length
        self._offsets = tf.constant(scales.offsets.astype(np.float32))
        self._last_symbol = tf.constant((scales.lengths - 2).astype(np.float32))  # the escape is the last
        self._width = int(scales.pmfs.shape[1])
        self._compiled_step = tf.function(self._step, reduce_retracing=True)
        self._score = tf.function(
            lambda latents, rows, mean, target, kept: self._cost(tf.round(latents), rows, mean, target, kept),
            reduce_retracing=True,
        )

    def _bits(self, y, rows):
        """Code length of each element of y under its table row, linear between integers (exact at them)."""
        tf = self._tf
        symbol = tf.clip_by_value(y - tf.gather(self._offsets, rows), 0.0, tf.gather(self._last_symbol, rows) - 1e-3)
        lower = tf.floor(symbol)
        index = rows * self._width + tf.cast(lower, tf.int32)
        flat = tf.reshape(self._lengths, [-1])
        t = symbol - lower
        return (1.0 - t) * tf.gather(flat, index) + t * tf.gather(flat, index + 1)

    def _cost(self, mix, rows, mean, target, kept):
        """Bits per pixel + weight x MSE of coded latents `mix` (y less `mean`), on the image's own pixels
        (`target`, 1 or 3 channels); `kept` is (mask, values): the elements that stay as they are."""
        tf = self._tf
        mix = tf.where(kept[0], kept[1], mix)  # no gradient reaches a kept element: Adam leaves it where it is
        size = tf.shape(target)
        decoded = tf.clip_by_value(self.synthesis(mix + mean)[:, : size[1], : size[2]], 0.0, 1.0)
        if target.shape[-1] == 1:  # a grey image is written as the mean of the decoded channels
            decoded = tf.reduce_mean(decoded, axis=-1, keepdims=True)
        pixels = tf.cast(size[1] * size[2], tf.float32)
        return tf.reduce_sum(self._bits(mix, rows)) / pixels + self.weight * tf.reduce_mean(tf.square(decoded - target))

    def _step(self, latents, moments, rows, mean, target, kept, temperature, seed):
        """One annealing step on the latents for this image's cost."""
        cost = lambda mix: self._cost(mix, rows, mean, target, kept)  # noqa: E731
        return annealed_step(self._tf, latents, moments, cost, temperature, seed, LEARNING_RATE)

    def refine(
        self,
        image: np.ndarray,
        padded: np.ndarray,
        y: np.ndarray,
        table_rows: np.ndarray,
        table_mean: np.ndarray | None,
        fixed: np.ndarray | None,
        steps: int,
    ) -> np.ndarray:
        """The integer y to code (int64, y's shape; less its mean for a mean-scale model) for one image,
        with `steps` of search.

        `image` is the (h, w) or (h, w, 3) uint8 image, `padded` the encoder's
        (h', w', 3) float input, `y` its continuous output less `table_mean`,
        `table_rows` and `table_mean` what the integer hyper-synthesis (and a
        checkerboard context) predict for y (the mean None for a scale-only
        model); `fixed`, None or a mask broadcasting to y's shape: elements of
        y that are integers already and stay as they are (a checkerboard's
        anchors, when the rest is searched under the context).
        """
        rounded = np.round(y).astype(np.int64)
        if steps <= 0:
            return rounded
        tf = self._tf
        height, width = image.shape[:2]
        with tf.device(self._device):
            rows = tf.constant(table_rows[None].astype(np.int32))
            mean = tf.constant(0.0 if table_mean is None else table_mean[None].astype(np.float32))
            channels = 1 if image.ndim == 2 else 3
            target = tf.constant(padded[None, :height, :width, :channels])
            latents = tf.constant(y[None].astype(np.float32))
            kept = (tf.constant(np.broadcast_to(False if fixed is None else fixed, y.shape)[None]), latents)
            moments = (tf.zeros_like(latents), tf.zeros_like(latents), tf.constant(0.0))
            best, best_cost = rounded, float(self._score(latents, rows, mean, target, kept))
            for i in range(1, steps + 1):
                latents, moments = self._compiled_step(
                    latents,
                    moments,
                    rows,
                    mean,
                    target,
                    kept,
                    tf.constant(temperature_at(i, steps)),
                    tf.constant([i, 0]),
                )
                if is_scored(i, steps):
                    trial = float(self._score(latents, rows, mean, target, kept))
                    if trial < best_cost:
                        best, best_cost = np.round(latents.numpy()[0]).astype(np.int64), trial
        return best


def search_weight(card: dict) -> float | None:
    """The rate-distortion weight a photo model was trained with (its card's lambda), or None."""
    value = card.get("config", {}).get("lmbda")
    return None if value is None or not math.isfinite(value) else float(value)
