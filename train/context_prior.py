"""An autoregressive prior over latent vectors: a masked MLP (MADE, Germain et al. 2015) predicts each latent's
mean and scale from the latents before it; frozen into an exact integer network for coding."""

from __future__ import annotations

import math

import numpy as np

from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402
from keras import ops  # noqa: E402

from latentlink.train.gaussian_rate import gaussian_bits  # noqa: E402

__all__ = [
    "ContextPrior",
    "MaskedDense",
    "SCALES",
    "MEAN_BINS",
    "context_prior_proto",
    "fit_tables",
    "gaussian_row_bits",
    "mean_bits",
    "with_tables",
]

# Table levels: scales from 0.11 (a latent almost surely at its mean) to 64, log-spaced.
SCALES = np.exp(np.linspace(math.log(0.11), math.log(64.0), 48))
# Means are coded to a quarter, an eighth or a sixteenth, whichever codes the training latents best (finer bins
# took 4.0% off q1's test bits and 1.8% off q2's, nothing off q5's, whose larger scales hide a mean's fraction).
MEAN_BINS = (4, 8, 16)
BINS_TOLERANCE = 0.001  # fewer bins (smaller tables) unless more save over 0.1% of the bits
SCALE_HEADROOM = 2.0  # tables reach twice the largest scale the network predicts for the training latents


class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (the autoregressive connectivity)."""

    def __init__(self, mask: np.ndarray, activation: str = "linear", **kwargs) -> None:
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, np.float32)
        self.activation = keras.activations.get(activation)
        self.relu = activation == "relu"

    def build(self, input_shape) -> None:
        fan_in = max(1.0, float(self.mask.sum(axis=0).mean()))
        init = keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / fan_in))
        self.kernel = self.add_weight(shape=self.mask.shape, initializer=init, name="kernel")
        self.bias = self.add_weight(shape=(self.mask.shape[1],), initializer="zeros", name="bias")
        self.mask_tensor = ops.convert_to_tensor(self.mask)

    def call(self, x):
        return self.activation(ops.matmul(x, self.kernel * self.mask_tensor) + self.bias)

    def masked_kernel(self) -> np.ndarray:
        return ops.convert_to_numpy(self.kernel) * self.mask


class ContextPrior(keras.layers.Layer):
    """p(y_d | y_<d): a Gaussian of predicted mean and scale, convolved with a unit uniform; `bits(y)` per example."""

    def __init__(self, latent: int, hidden: tuple[int, ...] = (128, 128), **kwargs) -> None:
        super().__init__(**kwargs)
        self.latent = latent
        # MADE degrees: input d has degree d; a hidden unit of degree k sees inputs 0..k; output d sees degrees < d.
        inputs = np.arange(latent)
        degrees = [inputs] + [np.arange(units) % max(1, latent - 1) for units in hidden]
        masks = [before[:, None] <= after[None, :] for before, after in zip(degrees, degrees[1:], strict=False)]
        outputs = np.concatenate([inputs, inputs])  # a mean and a log-scale per latent
        masks.append(degrees[-1][:, None] < outputs[None, :])
        self.layers_ = [MaskedDense(mask, "relu") for mask in masks[:-1]] + [MaskedDense(masks[-1])]

    def build(self, input_shape) -> None:
        shape = (None, self.latent)
        for layer in self.layers_:
            layer.build(shape)
            shape = (None, layer.mask.shape[1])

    def parameters(self, y):
        """Mean and log-scale of every latent given the ones before it, each (n, latent)."""
        x = y
        for layer in self.layers_:
            x = layer(x)
        return x[:, : self.latent], x[:, self.latent :]

    def bits(self, y):
        """Rate in bits of each example's (noisy or rounded) latent vector, shape (n,)."""
        return gaussian_row_bits(y, *self.parameters(y))


def gaussian_row_bits(y, mean, log_scale):
    """Bits of each row of y under Gaussians of these means and log-scales (clipped to SCALES): the prior's code
    length before any table, summed over axis 1."""
    scale = ops.exp(ops.clip(log_scale, math.log(SCALES[0]), math.log(SCALES[-1])))
    return ops.sum(gaussian_bits(y - mean, scale), axis=1)


def context_prior_proto(prior: ContextPrior, latents: np.ndarray):
    """Freezes a trained ContextPrior into the integer network and tables a decoder file carries.

    `latents`: the rounded training latents, (n, latent), whose scales bound the tables (see fit_tables).
    """
    from latentlink.shared.model_format import tensor_from_array
    from latentlink.shared.proto import model_pb2
    from latentlink.train.integer_export import ACTIVATION_FRACTION, integer_layer, log_thresholds

    layers, fraction = [], 0  # the latents are integers
    for layer in prior.layers_:
        layers.append(integer_layer(layer.masked_kernel(), ops.convert_to_numpy(layer.bias), fraction, layer.relu))
        fraction = ACTIVATION_FRACTION
    # The whole grid's thresholds only make it a readable network; fit_tables sets the tables and thresholds.
    network = model_pb2.ContextPrior(
        layers=layers, fraction_bits=ACTIVATION_FRACTION, thresholds=tensor_from_array(log_thresholds(SCALES))
    )
    return fit_tables(network, latents)


def fit_tables(prior, latents: np.ndarray):
    """A context prior's integer network with new tables, fitted to `latents` (rounded training latents, (n, d)):
    the SCALES up to SCALE_HEADROOM times the largest the network predicts for them, and the MEAN_BINS that code
    them best.

    The tables depend only on the integer network's outputs, so a shipped decoder's can be rebuilt without its
    float weights. A predicted scale past the last table is coded with the last: more bits, never an error.
    """
    from latentlink.shared.integer_network import IntegerNetwork

    latents = np.asarray(latents, np.float64)
    outputs = IntegerNetwork.from_proto(prior).outputs(latents[:, None, :])
    largest = float(np.exp(outputs[:, 0, latents.shape[1] :].max() / 2.0**prior.fraction_bits))
    scales = SCALES[: int(np.searchsorted(SCALES, min(SCALE_HEADROOM * largest, SCALES[-1]))) + 1]
    candidates = [with_tables(prior, scales, bins) for bins in MEAN_BINS]
    bits = [mean_bits(candidate, latents) for candidate in candidates]
    return next(c for c, b in zip(candidates, bits, strict=True) if b <= min(bits) * (1 + BINS_TOLERANCE))


def with_tables(prior, scales: np.ndarray, bins: int):
    """The context prior's integer network with tables for these scales and `bins` mean bins."""
    from latentlink.shared.model_format import tensor_from_array
    from latentlink.shared.proto import model_pb2
    from latentlink.train.integer_export import gaussian_tables, log_thresholds

    centres = (np.arange(bins) + 0.5) / bins  # a mean in bin b lies b/bins .. (b+1)/bins above its floor
    return model_pb2.ContextPrior(
        layers=prior.layers,
        fraction_bits=prior.fraction_bits,
        mean_bins=bins,
        thresholds=tensor_from_array(log_thresholds(scales)),
        tables=gaussian_tables(scales, centres).to_proto(),
    )


def mean_bits(prior, latents: np.ndarray) -> float:
    """Mean code length in bits of the rows of (n, d) integer latents under a context prior's exact tables."""
    from latentlink.shared.context_coding import ContextTables
    from latentlink.shared.proto import model_pb2

    network = model_pb2.Network(input_shape=[latents.shape[1]], context_prior=prior)
    return float(ContextTables(network).bits(latents).mean())
