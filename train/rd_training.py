"""Trains a rate-distortion autoencoder: MSE + beta * bits, with a learned factorised or context prior."""

from __future__ import annotations

import sys

import numpy as np

from latentlink.shared.tf_import import tensorflow

__all__ = ["train_rd"]


def train_rd(config, x_train: np.ndarray, progress: bool = True):
    """Trains encoder, decoder and prior end to end; returns (autoencoder, prior, per-epoch losses).

    Rate is measured on latents with additive uniform noise (a differentiable
    stand-in for rounding); the decoder learns on rounded latents through a
    straight-through gradient, so it trains on what it will decode.
    """
    tf = tensorflow()
    import keras
    from tqdm import tqdm

    from latentlink.train.autoencoder import rd_autoencoder
    from latentlink.train.context_prior import ContextPrior
    from latentlink.train.factorized_prior import FactorizedPrior

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    model = rd_autoencoder(config.latent_dim, config.channels, config.encoder_channels)
    if config.prior == "context":
        prior = ContextPrior(config.latent_dim, (config.context_width,) * 2)
    else:
        prior = FactorizedPrior(config.latent_dim)
    prior.build(None)
    x = x_train.astype(np.float32) / 255.0
    steps_per_epoch = -(-len(x) // config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps_per_epoch * config.epochs)
    optimizer = keras.optimizers.Adam(schedule)
    variables = model.encoder.trainable_variables + model.decoder.trainable_variables + prior.trainable_variables
    beta = tf.constant(config.beta, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([config.batch_size, *x.shape[1:]], tf.float32)])
    def step(batch):
        with tf.GradientTape() as tape:
            latent = model.encoder(batch, training=True)
            noisy = latent + tf.random.uniform(tf.shape(latent), -0.5, 0.5)
            rounded = latent + tf.stop_gradient(tf.round(latent) - latent)
            mse = tf.reduce_mean(tf.square(batch - model.decoder(rounded, training=True)))
            bits = tf.reduce_mean(prior.bits(noisy))
            loss = mse + beta * bits
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss, mse, bits

    rng = np.random.default_rng(config.seed)
    steps = len(x) // config.batch_size
    losses = []
    with tqdm(total=config.epochs, unit="epoch", disable=not progress, file=sys.stderr) as bar:
        for _ in range(config.epochs):
            # Sum on the device; reading a value every step would stall the pipeline.
            totals = tf.zeros(3)
            order = rng.permutation(len(x))
            for i in range(steps):
                totals += tf.stack(step(x[order[i * config.batch_size : (i + 1) * config.batch_size]]))
            loss, mse, bits = (totals / steps).numpy()
            losses.append(float(loss))
            bar.set_postfix(loss=f"{loss:.5f}", mse=f"{mse:.5f}", bits=f"{bits:.1f}")
            bar.update(1)
    return model, prior, losses
