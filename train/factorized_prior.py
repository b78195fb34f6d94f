"""A learned factorised prior over integer latents (Ballé et al. 2017's "entropy bottleneck").

Each latent dimension gets its own monotone CDF, an MLP with positive weights
over a scalar. The probability of an integer latent q is the CDF's increase
over [q - 1/2, q + 1/2], so training with additive uniform noise measures the
rate an entropy coder will pay after rounding. After training, `integer_pmfs`
freezes the prior into integer tables, which are what the coder uses on both
ends.
"""

from __future__ import annotations

import math

import numpy as np

from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["FactorizedPrior", "integer_pmfs"]


class FactorizedPrior(keras.layers.Layer):
    """Per-dimension learned density; `bits(y)` is the rate of y in bits per example."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.filters = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(self.filters) - 1))
        self.matrices, self.biases, self.factors = [], [], []
        for i in range(len(self.filters) - 1):
            fan_in, fan_out = self.filters[i], self.filters[i + 1]
            init = math.log(math.expm1(1.0 / scale / fan_out))
            constant, uniform = keras.initializers.Constant(init), keras.initializers.RandomUniform(-0.5, 0.5)
            self.matrices.append(self.add_weight(shape=(channels, fan_out, fan_in), initializer=constant, name=f"m{i}"))
            self.biases.append(self.add_weight(shape=(channels, fan_out, 1), initializer=uniform, name=f"b{i}"))
            if i < len(self.filters) - 2:
                self.factors.append(
                    self.add_weight(shape=(channels, fan_out, 1), initializer="zeros", name=f"factor{i}")
                )

    def _logits_cdf(self, x):
        """x: (channels, 1, n) -> CDF logits of the same shape."""
        for i, matrix in enumerate(self.matrices):
            x = ops.matmul(ops.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + ops.tanh(self.factors[i]) * ops.tanh(x)
        return x

    def likelihood(self, y):
        """Probability mass of each (noisy or rounded) latent, shape (n, channels)."""
        x = ops.expand_dims(ops.transpose(y), 1)  # (channels, 1, n)
        lower, upper = self._logits_cdf(x - 0.5), self._logits_cdf(x + 0.5)
        # Subtract in the tail where it is numerically stable.
        sign = -ops.sign(lower + upper)
        mass = ops.abs(ops.sigmoid(sign * upper) - ops.sigmoid(sign * lower))
        return ops.transpose(ops.squeeze(ops.maximum(mass, 1e-9), 1))

    def bits(self, y):
        """Rate in bits of each example's latent vector, shape (n,)."""
        return ops.sum(-ops.log(self.likelihood(y)) / math.log(2.0), axis=1)


def integer_pmfs(
    prior: FactorizedPrior, precision: int = 16, tail_mass: float = 1e-6, search: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Freezes the prior into integer tables: (offsets[C], lengths[C], pmfs[C, L]).

    Row c covers integers offsets[c] .. offsets[c] + lengths[c] - 2; its last
    used entry is the escape symbol for values outside that range. Each row's
    used entries are >= 1 and sum to 2**precision.
    """
    grid = np.arange(-search, search + 1, dtype=np.float32)
    mass = ops.convert_to_numpy(prior.likelihood(np.tile(grid[:, None], (1, prior.channels)))).astype(np.float64).T
    offsets, rows = [], []
    for pmf in mass:
        cumulative = np.cumsum(pmf)
        lo = int(np.searchsorted(cumulative, tail_mass / 2))
        hi = int(np.searchsorted(cumulative, cumulative[-1] - tail_mass / 2))
        kept = pmf[lo : hi + 1]
        escape = max(1.0 - kept.sum(), 0.0)
        offsets.append(int(grid[lo]))
        rows.append(_quantize(np.append(kept, escape), precision))
    width = max(len(r) for r in rows)
    pmfs = np.zeros((len(rows), width), np.int32)
    for c, row in enumerate(rows):
        pmfs[c, : len(row)] = row
    return np.array(offsets, np.int32), np.array([len(r) for r in rows], np.int32), pmfs


def _quantize(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Integer counts >= 1 summing to 2**precision, close to pmf."""
    total = 1 << precision
    counts = np.maximum(1, np.round(pmf / pmf.sum() * (total - len(pmf)))).astype(np.int64)
    counts[np.argmax(counts)] += total - counts.sum()
    return counts.astype(np.int32)
