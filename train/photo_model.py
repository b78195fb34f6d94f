"""A fully convolutional photo codec with a scale hyperprior (Ballé et al. 2018), built in Keras.

Four networks, each a Sequential of portable layers:

- analysis  (encoder file):  image (H, W, 3) in [0, 1] -> y (H/16, W/16, M)
- hyper_analysis (encoder):  y -> z (H/64, W/64, Z)
- synthesis (decoder file):  rounded y -> image
- hyper_synthesis (decoder, as an integer network after training): rounded z -> log-scale of each y,
  and (a mean-scale model, Minnen et al. 2018) its mean

z is coded with a learned factorised prior per channel; each y, less its
predicted mean, with a zero-mean Gaussian whose scale the hyper-synthesis
predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402
from keras import ops  # noqa: E402

from latentlink.shared.keras_bridge import GDN  # noqa: E402

__all__ = [
    "TrainableGDN",
    "PhotoModel",
    "build_photo_model",
    "SCALE_MIN",
    "SCALE_MAX",
    "SCALE_LEVELS",
    "STRIDE",
    "Z_STRIDE",
    "widen_hyper_synthesis",
]

STRIDE = 16  # image pixels per y position, each way
Z_STRIDE = 64  # image pixels per z position, each way
# The scale table of tensorflow-compression's indexed entropy models: 64 log-spaced Gaussian scales.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


class TrainableGDN(GDN):
    """GDN whose beta and gamma stay positive while training: both are squares of trained parameters."""

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        eye = ops.eye(channels)
        self.beta_root = self.add_weight(shape=(channels,), initializer="ones", name="beta_root")
        self.gamma_root = self.add_weight(
            shape=(channels, channels),
            initializer=lambda shape, dtype=None: ops.sqrt(0.1 * eye + 1e-5),
            name="gamma_root",
        )

    @property
    def beta(self):
        return ops.square(self.beta_root) + 1e-6

    @property
    def gamma(self):
        return ops.square(self.gamma_root)


@dataclass
class PhotoModel:
    """The four networks and the prior over z, trained together."""

    analysis: keras.Sequential
    synthesis: keras.Sequential
    hyper_analysis: keras.Sequential
    hyper_synthesis: keras.Sequential
    z_prior: keras.layers.Layer

    def parts(self) -> dict[str, keras.layers.Layer]:
        return {
            "analysis": self.analysis,
            "synthesis": self.synthesis,
            "hyper_analysis": self.hyper_analysis,
            "hyper_synthesis": self.hyper_synthesis,
            "z_prior": self.z_prior,
        }

    def trainable_variables(self) -> list:
        return [v for part in self.parts().values() for v in part.trainable_variables]

    @property
    def means(self) -> bool:
        """Whether the hyper-synthesis predicts a mean for each y as well as its scale."""
        return self.hyper_synthesis.output_shape[-1] == 2 * self.synthesis.input_shape[-1]

    def scale_and_mean(self, z_hat):
        """The training-time scale and mean of each y given z (the mean is 0 in a scale-only model)."""
        out = self.hyper_synthesis(z_hat)
        if not self.means:
            return self.log_scale_to_scale(out), ops.zeros_like(out)
        log_scale, mean = ops.split(out, 2, axis=-1)
        return self.log_scale_to_scale(log_scale), mean

    @staticmethod
    def log_scale_to_scale(log_scale):
        """Training-time scales, bounded like the quantised scale table."""
        return ops.exp(ops.clip(log_scale, math.log(SCALE_MIN), math.log(SCALE_MAX)))


def build_photo_model(
    channels: int = 64, latent: int = 96, hyper: int = 64, side: int = 32, colours: int = 3, means: bool = True
):
    """Builds a fresh PhotoModel; `channels` N, `latent` M, hyper width, `side` Z channels; `means`: mean-scale."""
    from latentlink.train.factorized_prior import FactorizedPrior

    def conv(filters: int, kernel: int = 5, stride: int = 2, activation: str = "linear"):
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", activation=activation)

    def deconv(filters: int, kernel: int = 5, stride: int = 2, activation: str = "linear"):
        return keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same", activation=activation)

    analysis = keras.Sequential(
        [
            keras.Input((None, None, colours)),
            keras.layers.Rescaling(1.0, offset=-0.5),
            conv(channels),
            TrainableGDN(),
            conv(channels),
            TrainableGDN(),
            conv(channels),
            TrainableGDN(),
            conv(latent),
        ],
        name="analysis",
    )
    synthesis = keras.Sequential(
        [
            keras.Input((None, None, latent)),
            deconv(channels),
            TrainableGDN(inverse=True),
            deconv(channels),
            TrainableGDN(inverse=True),
            deconv(channels),
            TrainableGDN(inverse=True),
            deconv(colours),
            keras.layers.Rescaling(1.0, offset=0.5),
        ],
        name="synthesis",
    )
    hyper_analysis = keras.Sequential(
        [
            keras.Input((None, None, latent)),
            conv(hyper, 3, 1, "relu"),
            conv(hyper, 5, 2, "relu"),
            conv(side, 5, 2),
        ],
        name="hyper_analysis",
    )
    hyper_synthesis = keras.Sequential(
        [
            keras.Input((None, None, side)),
            deconv(hyper, 5, 2, "relu"),
            deconv(hyper, 5, 2, "relu"),
            conv(2 * latent if means else latent, 3, 1),
        ],
        name="hyper_synthesis",
    )
    z_prior = FactorizedPrior(side)
    z_prior.build(None)
    return PhotoModel(analysis, synthesis, hyper_analysis, hyper_synthesis, z_prior)


def widen_hyper_synthesis(weights: list, model: PhotoModel) -> list:
    """A scale-only hyper-synthesis's weights fitted to `model`'s: a mean-scale model's last layer gets zero
    weights for its means (it starts as the scale-only model). Weights that already fit come back unchanged."""
    shapes = [tuple(w.shape) for w in model.hyper_synthesis.get_weights()]
    out = list(weights)
    if len(out) != len(shapes):
        return out  # does not fit: Keras says how
    for i in (-2, -1):  # the last layer's kernel and bias only
        weight, shape = out[i], shapes[i]
        if weight.shape != shape and shape == (*weight.shape[:-1], 2 * weight.shape[-1]):
            out[i] = np.concatenate([weight, np.zeros_like(weight)], axis=-1)
    return out
