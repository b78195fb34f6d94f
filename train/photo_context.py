"""Fits a checkerboard context (He et al. 2021) to a trained photo model, its transforms and hyperprior unchanged.

The model's encoder gives y for every training image (in all eight
orientations) and its integer hyper-synthesis the outputs both ends compute;
a small network then learns, from the rounded anchors of y (row + column
even) and those outputs, what to add to the log-scale and mean of every other
element so that it costs fewer bits. It is frozen into integer layers (see
HyperPrior.context in protos/model.proto); the decoder file gains them, and
nothing else in the model changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentlink.shared.model_dir import ModelFiles
from latentlink.shared.proto import model_pb2

__all__ = ["ContextConfig", "context_card", "context_maps", "fit_context", "integer_context", "write_context_model"]

KERNEL = 5  # the context's reach: the anchors within two positions each way


@dataclass(frozen=True)
class ContextConfig:
    """Everything that determines a context fit."""

    width: int = 128  # hidden channels
    steps: int = 6000
    batch_size: int = 8
    crop: int = 16  # y positions each way (even, so that crops keep the checkerboard's phase)
    learning_rate: float = 1e-3
    seed: int = 0


MAX_SIDE = 1536  # images are centre-cropped to this many pixels each way before their y is computed
MAX_MAPS = 512  # at most this many (y, outputs) pairs are held: 10.6 MB each at most for M = 96, 5.4 GB in all


def context_maps(files: ModelFiles, images: list[np.ndarray], orientations: int = 8) -> list[tuple]:
    """(continuous y, the integer hyper-synthesis's outputs) of each image under `files`' encoder, in its first
    `orientations` of the eight flips and rotations (fewer when there are many images: at most MAX_MAPS in all),
    each image centre-cropped to MAX_SIDE pixels each way."""
    from latentlink.shared.photo_codec import PhotoEncoder

    encoder = PhotoEncoder(files.encoder, files.decoder, "cpu")
    orientations = max(1, min(orientations, MAX_MAPS // max(1, len(images))))
    maps = []
    for image in images[:MAX_MAPS]:
        top, left = (max(0, (side - MAX_SIDE) // 2) for side in image.shape[:2])
        image = image[top : top + MAX_SIDE, left : left + MAX_SIDE]
        for turn in range(orientations):
            oriented = np.rot90(image[:, ::-1] if turn & 4 else image, turn & 3)
            _, y, _, outputs = encoder.analyse(np.ascontiguousarray(oriented))
            maps.append((y.astype(np.float32), outputs.astype(np.float32)))
    return maps


def _build(latent: int, width: int):
    """The float context: (q at the anchors, then the hyper-synthesis's outputs in their units, 2^-10) ->
    additions to those outputs (log-scales, then means)."""
    import keras

    inputs = keras.Input((None, None, 3 * latent))
    features = keras.layers.Conv2D(width, KERNEL, padding="same", name="features")(inputs[..., :latent])
    hidden = keras.layers.Concatenate()([features, inputs[..., latent:]])
    for name in ("mix", "mix2"):
        hidden = keras.layers.Conv2D(width, 1, activation="relu", name=name)(hidden)
    added = keras.layers.Conv2D(2 * latent, 1, kernel_initializer="zeros", name="added")(hidden)
    return keras.Model(inputs, added)


def fit_context(
    config: ContextConfig,
    maps: list[tuple],
    validation: list[tuple],
    progress: bool = True,
    log: Callable[[str], None] | None = None,
):
    """Trains the float context on `maps` (see `context_maps`); returns it and its figures (bits of the
    elements that are not anchors per element, before and after, on `validation`)."""
    from tqdm import tqdm

    from latentlink.shared.photo_codec import anchors
    from latentlink.shared.tf_import import tensorflow

    tf = tensorflow()
    import keras

    from latentlink.train.gaussian_rate import gaussian_bits
    from latentlink.train.integer_export import ACTIVATION_FRACTION
    from latentlink.train.photo_model import PhotoModel

    one = float(1 << ACTIVATION_FRACTION)  # the integer outputs' unit

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    latent = maps[0][0].shape[-1]
    model = _build(latent, config.width)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, config.steps), 0.05)
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=1.0)

    def rest_bits(y, outputs, training: bool):
        """Bits of the elements that are not anchors, per such element."""
        anchor = tf.cast(anchors(y.shape[1:]), tf.float32)  # (h, w, M), as each image's y
        mean = outputs[..., latent:] / one
        coded = tf.round(y - mean) * anchor
        added = model(tf.concat([coded, outputs / one], -1), training=training)
        log_scale = outputs[..., :latent] / one + added[..., :latent]
        scale = PhotoModel.log_scale_to_scale(log_scale)
        residual = y - mean - added[..., latent:]
        residual = residual + tf.random.uniform(tf.shape(y), -0.5, 0.5) if training else tf.round(residual)
        rest = 1.0 - anchor
        return tf.reduce_sum(gaussian_bits(residual, scale) * rest) / (tf.reduce_sum(rest) * y.shape[0])

    @tf.function
    def step(y, outputs):
        with tf.GradientTape() as tape:
            loss = rest_bits(y, outputs, True)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def validate() -> float:
        return float(np.mean([rest_bits(tf.constant(y[None]), tf.constant(o[None]), False) for y, o in validation]))

    history = {"val_rest_bits_before": validate()} if validation else {}
    start, size = time.perf_counter(), config.crop
    with tqdm(total=config.steps, unit="step", disable=not progress, file=sys.stderr) as bar:
        for i in range(1, config.steps + 1):
            picks = [maps[k] for k in rng.integers(len(maps), size=config.batch_size)]
            tops = [2 * rng.integers((y.shape[0] - size) // 2 + 1) for y, _ in picks]
            lefts = [2 * rng.integers((y.shape[1] - size) // 2 + 1) for y, _ in picks]
            crops = [
                np.stack([a[t : t + size, left : left + size] for a, t, left in zip(part, tops, lefts, strict=True)])
                for part in zip(*picks, strict=True)
            ]
            loss = float(step(tf.constant(crops[0]), tf.constant(crops[1])))
            bar.update(1)
            if i % 1000 == 0 or i == config.steps:
                history.update(step=i, loss=loss, **({"val_rest_bits": validate()} if validation else {}))
                if log is not None:
                    log(f"{time.perf_counter() - start:.0f}s " + " ".join(f"{k}={v:.4g}" for k, v in history.items()))
    history["train_seconds"] = round(time.perf_counter() - start, 1)
    return model, history


def integer_context(model) -> tuple[list[model_pb2.IntegerConv], list[model_pb2.IntegerConv]]:
    """The trained context as integer layers: the features of the anchors' q x 2^10 (a KERNEL x KERNEL layer
    that keeps only the taps that reach an anchor from a position that is not one: the rest read zeros there),
    then the 1x1 mix of the features and the hyper-synthesis's outputs."""
    from latentlink.train.integer_export import ACTIVATION_FRACTION, integer_layer

    kernel, bias = model.get_layer("features").get_weights()
    rows, columns = np.indices((KERNEL, KERNEL))
    kernel = kernel * ((rows + columns) % 2 == 1)[:, :, None, None]
    features = [integer_layer(kernel, bias, ACTIVATION_FRACTION, relu=False)]
    mix = [
        integer_layer(*model.get_layer(name).get_weights(), ACTIVATION_FRACTION, relu=name != "added")
        for name in ("mix", "mix2", "added")
    ]
    return features, mix


def write_context_model(files: ModelFiles, layers: tuple[list, list], card: dict, out: Path, name: str) -> ModelFiles:
    """Writes `files`' model with the context in its decoder (the encoder as it is) to `out`, named `name`."""
    from latentlink.shared.model_dir import save_model_dir

    decoder, encoder = model_pb2.Network(), model_pb2.Network()
    decoder.CopyFrom(files.decoder.network)
    encoder.CopyFrom(files.encoder.network)
    decoder.model_name = encoder.model_name = name
    for field, part in zip((decoder.hyperprior.context, decoder.hyperprior.context_mix), layers, strict=True):
        del field[:]
        field.extend(part)
    return save_model_dir(out, encoder, decoder, {**files.card, "context": card})


def context_card(config: ContextConfig, history: dict, command: str) -> dict:
    """What a model card says about its context: how it was fitted, and its figures."""
    return {"config": asdict(config), "fit_command": command, "fit": history}
