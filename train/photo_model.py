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
    "grow_weights",
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


def grow_weights(weights: dict[str, list], model: PhotoModel) -> dict[str, list]:
    """Fits the weights of a narrower model (fewer channels N, latents M or hyper channels; or scale-only) into
    `model`, which then starts as that model: to train a wider one on from a trained one (Net2Net's idea).

    Each layer keeps its old channels' weights; a channel it gains gets fresh weights in and zero weights out
    (no old channel reads it), a new latent starts near zero with the smallest scale (nearly no bits), and a
    scale-only hyper-synthesis gets zero means. The prior over z cannot grow. Weights that fit come back
    unchanged, as do parts that cannot be fitted (loading them then fails with Keras' reason).
    """
    grown = dict(weights)
    old_latent = weights["analysis"][-1].shape[-1]
    for name, part in model.parts().items():
        old, fresh = list(weights[name]), part.get_weights()
        if name == "z_prior" or len(old) != len(fresh):
            continue  # z's prior cannot grow; another layout cannot either (Keras says how it differs)
        if all(o.shape == f.shape for o, f in zip(old, fresh, strict=True)):
            continue  # fits as it is
        layers = [layer for layer in part.layers if layer.weights]
        pairs = [old[i : i + 2] for i in range(0, len(old), 2)]
        fresh_pairs = [fresh[i : i + 2] for i in range(0, len(fresh), 2)]
        out = []
        for index, (layer, pair, fresh_pair) in enumerate(zip(layers, pairs, fresh_pairs, strict=True)):
            last = index == len(layers) - 1
            if isinstance(layer, TrainableGDN):
                grown_pair = _grow_gdn(*pair, *fresh_pair)
            else:
                grown_pair = _grow_layer(layer, pair, fresh_pair, name, last, old_latent, model)
            if grown_pair is None:
                break
            out += grown_pair
        else:
            grown[name] = out
    return grown


def _grow_layer(layer, pair, fresh_pair, name, last, old_latent, model) -> list | None:
    """A convolution's kernel and bias grown (see grow_weights); None if they cannot be."""
    transposed = isinstance(layer, keras.layers.Conv2DTranspose)  # its kernel is [k, k, out, in]
    old_kernel, fresh_kernel = (np.swapaxes(w, -1, -2) if transposed else w for w in (pair[0], fresh_pair[0]))
    groups = [(old_kernel.shape[-1], fresh_kernel.shape[-1], None)]
    if last and name == "hyper_synthesis":  # log-scales (new ones the smallest), then any means
        latent, old_means = model.synthesis.input_shape[-1], old_kernel.shape[-1] - old_latent
        groups = [(old_latent, latent, math.log(SCALE_MIN))]
        if model.means and old_means in (0, old_latent):
            groups.append((old_means, latent, 0.0))  # a scale-only model's means start at zero
    grown = _grow_conv(old_kernel, pair[1], fresh_kernel, fresh_pair[1], groups)
    if grown is None:
        return None
    if last and name == "analysis":  # new latents start near zero
        grown[0][..., old_latent:] *= 0.1
    return [np.swapaxes(grown[0], -1, -2) if transposed else grown[0], grown[1]]


def _grow_conv(old_kernel, old_bias, fresh_kernel, fresh_bias, groups) -> list | None:
    """A kernel [..., in, out] and its bias grown to the fresh ones' sizes, output group by group (width before,
    width now, the bias of its new outputs, or None for fresh weights); None if they cannot be."""
    old_in = old_kernel.shape[-2]
    if old_in > fresh_kernel.shape[-2] or old_kernel.shape[:-2] != fresh_kernel.shape[:-2]:
        return None
    if old_kernel.shape[-1] != sum(g[0] for g in groups) or fresh_kernel.shape[-1] != sum(g[1] for g in groups):
        return None
    if any(old > new for old, new, _ in groups):
        return None
    kernel, bias = fresh_kernel.copy(), fresh_bias.copy()
    old_start = new_start = 0
    for old_width, new_width, fill in groups:
        kept, added = slice(new_start, new_start + old_width), slice(new_start + old_width, new_start + new_width)
        kernel[..., kept] = 0.0  # no old output reads a new input
        kernel[..., :old_in, kept] = old_kernel[..., old_start : old_start + old_width]
        bias[kept] = old_bias[old_start : old_start + old_width]
        if fill is not None:
            kernel[..., added], bias[added] = 0.0, fill
        old_start, new_start = old_start + old_width, new_start + new_width
    return [kernel, bias]


def _grow_gdn(beta_root, gamma_root, fresh_beta_root, fresh_gamma_root) -> list | None:
    """A GDN's old channels keep their parameters, new ones start as a fresh GDN's; None if it has fewer."""
    old = len(beta_root)
    if old > len(fresh_beta_root):
        return None
    beta, gamma = fresh_beta_root.copy(), fresh_gamma_root.copy()
    beta[:old], gamma[:old, :old] = beta_root, gamma_root
    return [beta, gamma]
