"""Would the photo search's annealing beat the digit models' coordinate search (`--effort`)? (not shipped)

Codes the last N MNIST training images with a context-prior rung: rounding, the shipped coordinate search
(1 and 2 passes), and stochastic Gumbel annealing through the decoder (sender/annealing.py), with the prior's
rate taken from a float replica of its integer network (the exact Gaussians it predicts, no tables), then one
coordinate pass. Every result is scored exactly: MSE + beta x bits of the real tables, mean over the images.

    python bench/digit_annealing.py --data ../shared/data/mnist.npz --quality 2 --images 256 --steps 100 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from latentlink.sender.annealing import LEARNING_RATE, annealed_step, is_scored, temperature_at
from latentlink.sender.encode import BatchEncoder
from latentlink.sender.search import refine
from latentlink.shared.keras_bridge import keras_from_network
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.shared.model_format import tensor_to_array
from latentlink.shared.network_runtime import load_network
from latentlink.shared.tf_import import tensorflow
from latentlink.train.context_prior import gaussian_row_bits
from latentlink.train.mnist import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--images", type=int, default=256, help="the last N training images")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    args = parser.parse_args()
    tf = tensorflow()
    x_train, _ = load_mnist(args.data)
    images = x_train[-args.images :]
    model = load_model_dir(quality_model_dir(args.quality))
    encoder = BatchEncoder(model, "cpu")
    beta, tables, decode = model.card["config"]["beta"], encoder.tables, encoder.decoder_network
    continuous = load_network(model.encoder, "cpu")(images.astype(np.float32) / 255.0).astype(np.float64)
    target = images.astype(np.float32) / 255.0

    def cost(latents: np.ndarray) -> np.ndarray:
        error = np.mean((decode(latents.astype(np.float32)) - target) ** 2, axis=(1, 2))
        return error + beta * tables.bits(latents)

    rows = [("rounding", np.round(continuous), 0.0)]
    for passes in (1, 2):
        started = time.perf_counter()
        searched = refine(decode, tables, images, continuous, beta, passes)
        rows.append((f"coordinate search, {passes} pass(es)", searched, time.perf_counter() - started))

    prior = model.decoder.network.context_prior
    layers = [  # the integer MADE in floats: (x 2^in_fraction @ kernel + bias) / 2^shift, in units of 2^-fraction
        (
            tf.constant(tensor_to_array(layer.kernel)[0, 0], tf.float32),
            tf.constant(tensor_to_array(layer.bias), tf.float32),
            layer,
        )
        for layer in prior.layers
    ]

    def rate(mix):
        x, fraction = mix, 0
        for kernel, bias, layer in layers:
            x = (tf.matmul(x * 2.0**fraction, kernel) + bias) / 2.0 ** (layer.shift + prior.fraction_bits)
            x = tf.nn.relu(x) if layer.relu else x
            fraction = prior.fraction_bits
        return gaussian_row_bits(mix, x[:, : tables.latent], x[:, tables.latent :])

    synthesis, pixels = keras_from_network(model.decoder), tf.constant(target)

    def soft_cost(mix):
        error = tf.reduce_mean(tf.square(synthesis(mix) - pixels), axis=[1, 2])
        return tf.reduce_sum(error + beta * rate(mix))

    step = tf.function(
        lambda latents, moments, temperature, seed: annealed_step(
            tf, latents, moments, soft_cost, temperature, seed, args.learning_rate
        )
    )
    for steps in args.steps:
        started = time.perf_counter()
        latents = tf.constant(continuous, tf.float32)
        moments = (tf.zeros_like(latents), tf.zeros_like(latents), tf.constant(0.0))
        best = np.round(continuous)
        best_cost = cost(best)
        for i in range(1, steps + 1):
            latents, moments = step(latents, moments, tf.constant(temperature_at(i, steps)), tf.constant([i, 0]))
            if is_scored(i, steps):
                candidate = np.round(latents.numpy()).astype(np.float64)
                trial = cost(candidate)
                better = trial < best_cost
                best[better], best_cost = candidate[better], np.where(better, trial, best_cost)
        annealed = time.perf_counter() - started
        rows.append((f"annealing, {steps} steps", best.copy(), annealed))
        finished = refine(decode, tables, images, best, beta, 1)
        rows.append((f"annealing, {steps} steps, then 1 coordinate pass", finished, time.perf_counter() - started))

    base = cost(rows[0][1]).mean()
    print(f"q{args.quality}, the last {args.images} training images; cost = MSE + {beta:g} x bits\n")
    print("| search | cost | change | bytes/image | MSE | sender ms/image |\n|---|---|---|---|---|---|")
    for name, latents, seconds in rows:
        total = cost(latents).mean()
        mse = np.mean((decode(latents.astype(np.float32)) - target) ** 2)
        print(
            f"| {name} | {total:.6f} | {100 * (total / base - 1):+.1f}% | {tables.bits(latents).mean() / 8:.3f} "
            f"| {mse:.5f} | {1000 * seconds / args.images:.1f} |"
        )


if __name__ == "__main__":
    main()
