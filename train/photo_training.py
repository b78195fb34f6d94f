"""Trains the photo codec on a folder of images: random crops, a validation split, rate + lambda * distortion."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentlink.train.gaussian_rate import gaussian_bits

__all__ = [
    "InitError",
    "PhotoConfig",
    "load_image_folder",
    "split_images",
    "train_photo",
    "save_checkpoint",
    "load_checkpoint",
]


@dataclass(frozen=True)
class PhotoConfig:
    """Everything that determines a photo training run."""

    channels: int = 64
    latent: int = 96
    hyper: int = 64
    side: int = 32
    lmbda: float = 0.01  # weight of 255^2 * MSE against bits per pixel (CompressAI's convention)
    steps: int = 2000
    batch_size: int = 4
    crop: int = 192  # 4 crops of 192 learned faster per CPU second than 8 of 128 (bench/RESULTS.md)
    learning_rate: float = 1e-3
    final_rate: float = 0.02  # cosine decay of the learning rate to this fraction: a constant 1e-3 stalls 2 dB short
    clip_norm: float = 1.0  # gradients are clipped to this global norm (as CompressAI trains): GDN can diverge
    val_fraction: float = 0.1
    seed: int = 0
    means: bool = True  # the hyper-synthesis predicts each latent's mean as well as its scale (Minnen et al. 2018)


class ImageFolderError(ValueError):
    """A training folder has no usable images."""


class InitError(ValueError):
    """What --init names cannot start this model (another shape: width, latent channels, a mean-scale model
    for a scale-only one)."""


def load_image_folder(folder: Path, min_side: int, colours: int = 3) -> tuple[list[np.ndarray], list[str]]:
    """Reads every image under `folder` as uint8 (H, W, colours); returns them and the files skipped, with reasons.

    Raises ImageFolderError when the folder is missing, empty, or has no image
    at least `min_side` pixels each way.
    """
    from PIL import Image, UnidentifiedImageError

    from latentlink.shared.image_io import is_image_suffix

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder} is not a folder")
    images, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if not is_image_suffix(path.suffix.lower()):
            continue
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB" if colours == 3 else "L"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        if min(array.shape[:2]) < min_side:
            skipped.append(f"{path.name}: {array.shape[1]}x{array.shape[0]} is smaller than the {min_side}-pixel crop")
            continue
        images.append(array.reshape(*array.shape[:2], colours))
    if not images:
        detail = f" ({len(skipped)} unreadable or too small)" if skipped else ""
        raise ImageFolderError(f"{folder} has no usable images{detail}")
    return images, skipped


def random_crops(images: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random size x size crops, randomly mirrored, as float32 in [0, 1]."""
    out = np.empty((count, size, size, images[0].shape[2]), np.float32)
    for i in range(count):
        image = images[rng.integers(len(images))]
        top = rng.integers(image.shape[0] - size + 1)
        left = rng.integers(image.shape[1] - size + 1)
        crop = image[top : top + size, left : left + size]
        out[i] = (crop[:, ::-1] if rng.integers(2) else crop) / 255.0
    return out


def save_checkpoint(model, path: Path) -> None:
    """Writes every part's weights to one .npz (plain arrays, no pickles)."""
    arrays = {f"{name}/{i}": w for name, part in model.parts().items() for i, w in enumerate(part.get_weights())}
    tmp = Path(path).with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_checkpoint(model, path: Path) -> None:
    """Loads weights written by `save_checkpoint` into a model of the same shape, or grown from a narrower one."""
    from latentlink.train.photo_model import grow_weights

    with np.load(path, allow_pickle=False) as data:
        weights = {
            name: [data[key] for key in sorted((k for k in data if k.startswith(f"{name}/")), key=_index)]
            for name in model.parts()
        }
    missing = [name for name, arrays in weights.items() if not arrays]
    if missing:
        raise KeyError(f"no weights for {', '.join(missing)} in {path}")
    for name, grown in grow_weights(weights, model).items():
        model.parts()[name].set_weights(grown)


def _index(key: str) -> int:
    return int(key.rpartition("/")[2])


def _start_from(model, init: Path) -> None:
    """Loads a checkpoint, a model folder or a shipped model's name into `model`; raises InitError if it does
    not fit."""
    from latentlink.shared.model_dir import load_model_dir
    from latentlink.train.photo_export import load_photo_model

    try:
        if init.is_file():
            load_checkpoint(model, init)
        else:
            load_photo_model(model, load_model_dir(init))
    except (ValueError, KeyError, OSError) as exc:  # a shape that differs, a file or folder missing
        raise InitError(f"--init {init} does not fit this model: {exc}") from None


def split_images(images: list[np.ndarray], config: PhotoConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A seeded split into (training, validation) images; validation gets `val_fraction` of them."""
    order = np.random.default_rng(config.seed).permutation(len(images))
    held = int(round(len(images) * config.val_fraction)) if len(images) > 1 else 0
    return [images[i] for i in order[held:]], [images[i] for i in order[:held]]


def train_photo(
    config: PhotoConfig,
    training: list[np.ndarray],
    validation: list[np.ndarray],
    checkpoint: Path | None = None,
    init: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
):
    """Trains a PhotoModel; returns it and a dict of training and validation figures."""
    from tqdm import tqdm

    from latentlink.shared.tf_import import tensorflow

    tf = tensorflow()
    import keras

    from latentlink.train.photo_model import build_photo_model

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_photo_model(
        config.channels, config.latent, config.hyper, config.side, training[0].shape[2], config.means
    )
    if init is not None:
        _start_from(model, Path(init))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, config.steps), config.final_rate)
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=config.clip_norm)
    variables = model.trainable_variables()
    lmbda = tf.constant(config.lmbda * 255.0**2, tf.float32)
    shape = [config.batch_size, config.crop, config.crop, training[0].shape[2]]

    def forward(batch, training: bool):
        y = model.analysis(batch, training=training)
        z = model.hyper_analysis(y, training=training)
        z_hat = z + tf.random.uniform(tf.shape(z), -0.5, 0.5) if training else tf.round(z)
        scale, mean = model.scale_and_mean(z_hat)
        residual = y - mean  # what is coded: y less its predicted mean, rounded
        y_noisy = residual + tf.random.uniform(tf.shape(y), -0.5, 0.5) if training else tf.round(residual)
        y_hat = y + tf.stop_gradient(tf.round(residual) - residual)  # the decoder learns on what it will decode
        x_hat = model.synthesis(y_hat, training=training)
        pixels = tf.cast(tf.reduce_prod(tf.shape(batch)[:3]), tf.float32)
        z_bits = tf.reduce_sum(model.z_prior.bits(tf.reshape(z_hat, [-1, z.shape[-1]])))
        y_bits = tf.reduce_sum(gaussian_bits(y_noisy, scale))
        bpp = (z_bits + y_bits) / pixels
        mse = tf.reduce_mean(tf.square(batch - x_hat))
        return bpp, mse, x_hat

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def step(batch):
        with tf.GradientTape() as tape:
            bpp, mse, _ = forward(batch, True)
            loss = bpp + lmbda * mse
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return tf.stack([loss, bpp, mse])

    val_step = tf.function(
        lambda batch: forward(batch, False)[:2], input_signature=[tf.TensorSpec([1, None, None, shape[3]], tf.float32)]
    )

    def validate() -> dict[str, float]:
        if not validation:
            return {}
        bpps, psnrs = [], []
        for image in validation:
            h, w = (d // 64 * 64 for d in image.shape[:2])
            batch = image[None, :h, :w].astype(np.float32) / 255.0
            bpp, mse = (float(v) for v in val_step(tf.constant(batch)))
            bpps.append(bpp)
            psnrs.append(10 * math.log10(1 / max(mse, 1e-12)))
        return {"val_bpp": float(np.mean(bpps)), "val_psnr_db": float(np.mean(psnrs))}

    start = time.perf_counter()
    totals, every = (
        tf.zeros(3),
        max(1, min(100, config.steps // 10)),
    )  # a log line every 100 steps (10 in all, if fewer)
    history: dict[str, float] = {}
    with tqdm(total=config.steps, unit="step", disable=not progress, file=sys.stderr) as bar:
        for i in range(1, config.steps + 1):
            totals += step(tf.constant(random_crops(training, config.batch_size, config.crop, rng)))
            bar.update(1)
            if i % every == 0 or i == config.steps:
                loss, bpp, mse = (totals / (i % every or every)).numpy()
                totals = tf.zeros(3)
                history = {
                    "step": i,
                    "loss": float(loss),
                    "train_bpp": float(bpp),
                    "train_psnr_db": 10 * math.log10(1 / max(float(mse), 1e-12)),
                }
                bar.set_postfix(bpp=f"{bpp:.3f}", psnr=f"{history['train_psnr_db']:.2f}")
                if i % 1000 == 0 or i == config.steps:
                    history.update(validate())
                    if checkpoint is not None:
                        save_checkpoint(model, checkpoint)
                if log is not None:
                    log(f"{time.perf_counter() - start:.0f}s " + " ".join(f"{k}={v:.4g}" for k, v in history.items()))
    history["train_seconds"] = round(time.perf_counter() - start, 1)
    history["train_images"] = len(training)
    history["validation_images"] = len(validation)
    return model, history
