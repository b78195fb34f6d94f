"""An autoregressive prior over latent vectors: a masked MLP (MADE, Germain et al. 2015) predicts each latent's
mean and scale from the latents before it; frozen into an exact integer network for coding."""

from __future__ import annotations

import math

import numpy as np

from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["ContextPrior", "MaskedDense", "SCALES", "MEAN_BINS", "context_prior_proto"]

# Table levels: scales from 0.11 (a latent almost surely at its mean) to 64, log-spaced.
SCALES = np.exp(np.linspace(math.log(0.11), math.log(64.0), 48))
MEAN_BINS = 4  # means are coded to a quarter


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
        mean, log_scale = self.parameters(y)
        scale = ops.exp(ops.clip(log_scale, math.log(SCALES[0]), math.log(SCALES[-1])))
        values = ops.abs(y - mean)
        upper = 0.5 * ops.erfc(-(0.5 - values) / (scale * math.sqrt(2.0)))
        lower = 0.5 * ops.erfc(-(-0.5 - values) / (scale * math.sqrt(2.0)))
        return ops.sum(-ops.log(ops.maximum(upper - lower, 1e-9)) / math.log(2.0), axis=1)


def context_prior_proto(prior: ContextPrior):
    """Freezes a trained ContextPrior into the integer network and tables a decoder file carries."""
    from latentlink.shared.model_format import tensor_from_array
    from latentlink.shared.proto import model_pb2
    from latentlink.train.integer_export import ACTIVATION_FRACTION, gaussian_tables, integer_layer, log_thresholds

    layers, fraction = [], 0  # the latents are integers
    for layer in prior.layers_:
        layers.append(integer_layer(layer.masked_kernel(), ops.convert_to_numpy(layer.bias), fraction, layer.relu))
        fraction = ACTIVATION_FRACTION
    centres = (np.arange(MEAN_BINS) + 0.5) / MEAN_BINS  # a mean in bin b lies b/4 .. (b+1)/4 above its floor
    return model_pb2.ContextPrior(
        layers=layers,
        fraction_bits=ACTIVATION_FRACTION,
        mean_bins=MEAN_BINS,
        thresholds=tensor_from_array(log_thresholds(SCALES)),
        tables=gaussian_tables(SCALES, centres).to_proto(),
    )
