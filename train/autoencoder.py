"""Autoencoder families, each built as a separate encoder and decoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402

__all__ = [
    "FAMILIES",
    "IMAGE_SHAPE",
    "Autoencoder",
    "build_autoencoder",
    "conv_autoencoder",
    "seed_autoencoder",
]

IMAGE_SHAPE = (28, 28)


@dataclass
class Autoencoder:
    """An encoder (image -> latent) and a decoder (latent -> image) trained together."""

    encoder: keras.Sequential
    decoder: keras.Sequential

    def joined(self) -> keras.Model:
        """Returns encoder and decoder chained, sharing their weights, for training."""
        image = keras.Input(IMAGE_SHAPE)
        return keras.Model(image, self.decoder(self.encoder(image)))


def seed_autoencoder(latent_dim: int = 64, hidden: Sequence[int] = (128,), activation: str = "sigmoid") -> Autoencoder:
    """Builds the seed's MLP: 784 -> hidden -> latent -> reversed hidden -> 784, sigmoid."""
    init = keras.initializers.RandomUniform(-0.05, 0.05)  # "small ranges", as in the seed

    def dense(units: int) -> keras.layers.Dense:
        return keras.layers.Dense(units, activation=activation, kernel_initializer=init)

    encoder = keras.Sequential(
        [keras.Input(IMAGE_SHAPE), keras.layers.Flatten(), *map(dense, hidden), dense(latent_dim)],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            *map(dense, reversed(hidden)),
            keras.layers.Dense(28 * 28, activation="sigmoid", kernel_initializer=init),
            keras.layers.Reshape(IMAGE_SHAPE),
        ],
        name="decoder",
    )
    return Autoencoder(encoder, decoder)


def conv_autoencoder(latent_dim: int = 64, channels: int = 32) -> Autoencoder:
    """Builds a small convolutional autoencoder (ReLU, strided convs, linear latent)."""
    return _conv(latent_dim, channels, channels)


def rd_autoencoder(latent_dim: int = 32, channels: int = 20, encoder_channels: int = 32) -> Autoencoder:
    """Builds the rate-distortion family: a full-width conv encoder and a slim decoder.

    Its latents are rounded to integers and entropy-coded; the decoder is kept
    small because it is what travels to each receiver, while the encoder (on the
    sender, which may have a GPU) can be as wide as pays.
    """
    return _conv(latent_dim, encoder_channels, channels)


def _conv(latent_dim: int, encoder_channels: int, decoder_channels: int) -> Autoencoder:
    def conv(filters: int, stride: int, cls=keras.layers.Conv2D, activation: str = "relu"):
        return cls(filters, 3, strides=stride, padding="same", activation=activation)

    encoder = keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            keras.layers.Reshape((28, 28, 1)),
            conv(encoder_channels, 2),  # 14x14
            conv(2 * encoder_channels, 2),  # 7x7
            keras.layers.Flatten(),
            keras.layers.Dense(latent_dim),
        ],
        name="encoder",
    )
    decoder = keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(7 * 7 * decoder_channels, activation="relu"),
            keras.layers.Reshape((7, 7, decoder_channels)),
            conv(2 * decoder_channels, 2, keras.layers.Conv2DTranspose),  # 14x14
            conv(decoder_channels, 2, keras.layers.Conv2DTranspose),  # 28x28
            conv(1, 1, activation="sigmoid"),
            keras.layers.Reshape(IMAGE_SHAPE),
        ],
        name="decoder",
    )
    return Autoencoder(encoder, decoder)


FAMILIES = {"seed": seed_autoencoder, "conv": conv_autoencoder, "rd": rd_autoencoder}


def build_autoencoder(family: str, latent_dim: int) -> Autoencoder:
    """Builds an untrained autoencoder of a named family."""
    try:
        return FAMILIES[family](latent_dim)
    except KeyError:
        raise ValueError(f'unknown model family "{family}" (choose from {", ".join(FAMILIES)})') from None
