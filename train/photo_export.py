"""Freezes a trained PhotoModel into portable files: float transforms, an integer hyper-synthesis, integer tables."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.model_dir import ModelFiles, load_model_dir, save_model_dir
from latentlink.shared.model_format import tensor_from_array
from latentlink.shared.proto import model_pb2
from latentlink.train.integer_export import (
    ACTIVATION_FRACTION,
    PRECISION,
    TAIL_MASS,
    gaussian_tables,
    integer_layer,
    log_thresholds,
)
from latentlink.train.photo_model import SCALE_LEVELS, SCALE_MAX, SCALE_MIN

SCALE_TABLE = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))

__all__ = ["evaluate_photo_model", "integer_hyper_synthesis", "load_photo_model", "scale_tables", "write_photo_model"]


def integer_hyper_synthesis(hyper_synthesis) -> tuple[list[model_pb2.IntegerConv], np.ndarray]:
    """Quantises the trained hyper-synthesis into integer layers (outputs with ACTIVATION_FRACTION fractional
    bits: log-scales, then means for a mean-scale model), and the scale table into log-scale thresholds."""
    layers, fraction = [], 0  # z is an integer
    for layer in hyper_synthesis.layers:
        kernel, bias = layer.get_weights()
        config = layer.get_config()
        transpose, stride = type(layer).__name__ == "Conv2DTranspose", int(config["strides"][0])
        layers.append(integer_layer(kernel, bias, fraction, config["activation"] == "relu", transpose, stride))
        fraction = ACTIVATION_FRACTION
    return layers, log_thresholds(SCALE_TABLE)


def scale_tables() -> EntropyTables:
    """Integer tables for a zero-mean Gaussian of each scale in the table, convolved with a unit uniform."""
    return gaussian_tables(SCALE_TABLE)


def write_photo_model(model, config, history: dict, out: Path, name: str, command: str) -> ModelFiles:
    """Writes the portable model folder of a trained PhotoModel, with a card of its training and validation."""
    from dataclasses import asdict

    from latentlink.shared.keras_bridge import layers_from_keras, network_from_keras
    from latentlink.train.factorized_prior import integer_pmfs

    encoder = network_from_keras(model.analysis, model_pb2.ROLE_ENCODER, name)
    encoder.hyper_analysis.extend(layers_from_keras(model.hyper_analysis))
    decoder = network_from_keras(model.synthesis, model_pb2.ROLE_DECODER, name)
    layers, thresholds = integer_hyper_synthesis(model.hyper_synthesis)
    side = EntropyTables(*integer_pmfs(model.z_prior, PRECISION, TAIL_MASS), precision=PRECISION)
    decoder.hyperprior.CopyFrom(
        model_pb2.HyperPrior(
            side_channels=model.z_prior.channels,
            layers=layers,
            thresholds=tensor_from_array(thresholds),
            side=side.to_proto(),
            scales=scale_tables().to_proto(),
            means=model.means,
            mean_fraction_bits=ACTIVATION_FRACTION if model.means else 0,  # the last layer's output fraction
        )
    )
    card = {
        "family": "photo-mean-scale-hyperprior" if model.means else "photo-hyperprior",
        "config": asdict(config),
        "train_command": command,
        "training": history,
        "encoder_params": model.analysis.count_params() + model.hyper_analysis.count_params(),
        "decoder_params": model.synthesis.count_params() + model.hyper_synthesis.count_params(),
    }
    save_model_dir(out, encoder, decoder, card)
    return load_model_dir(out)


def evaluate_photo_model(files: ModelFiles, images: list[np.ndarray]) -> dict[str, float]:
    """Real bitstreams and 8-bit reconstructions: mean bits per pixel (bitstream only), PSNR and seconds per image."""
    from latentlink.shared.photo_codec import PhotoDecoder, PhotoEncoder, image_shape

    encoder, decoder = PhotoEncoder(files.encoder, files.decoder, "cpu"), PhotoDecoder(files.decoder)
    bpps, psnrs, enc_s, dec_s = [], [], 0.0, 0.0
    for image in images:
        h, w = image.shape[:2]
        start = time.perf_counter()
        _, data = encoder.encode(image)
        enc_s += time.perf_counter() - start
        start = time.perf_counter()
        _, decoded = decoder.decode(data, *image_shape(image))
        dec_s += time.perf_counter() - start
        mse = float(np.mean((decoded.astype(np.float64) - image.reshape(decoded.shape)) ** 2))
        bpps.append(8 * len(data) / (h * w))
        psnrs.append(10 * math.log10(255.0**2 / max(mse, 1e-12)))
    n = len(images)
    return {
        "bpp": float(np.mean(bpps)),
        "psnr_db": float(np.mean(psnrs)),
        "encode_s": enc_s / n,
        "decode_s": dec_s / n,
        "images": n,
    }


def load_photo_model(model, files: ModelFiles) -> None:
    """Loads a shipped or exported photo model's weights into a PhotoModel of the same shape, or grown from it
    (`grow_weights`), to train it further.

    The transforms come back exactly; the hyper-synthesis from its integer
    weights (within their rounding); the prior over z, which the files hold
    only as frozen tables, starts afresh.
    """
    from latentlink.shared.model_format import tensor_to_array
    from latentlink.train.photo_model import grow_weights

    def float_layers(portable_layers) -> list:
        weights = []
        for layer in portable_layers:
            kind = layer.WhichOneof("kind")
            spec = getattr(layer, kind)
            if kind == "gdn":  # trained as squares: beta = beta_root^2 + 1e-6, gamma = gamma_root^2
                beta, gamma = tensor_to_array(spec.beta), tensor_to_array(spec.gamma)
                weights += [np.sqrt(np.maximum(beta - 1e-6, 0)), np.sqrt(gamma)]
            elif kind in ("conv2d", "conv2d_transpose"):
                weights += [tensor_to_array(spec.kernel), tensor_to_array(spec.bias)]
        return weights

    hyper_synthesis, fraction = [], 0
    for layer in files.decoder.network.hyperprior.layers:
        weight_fraction = layer.shift + ACTIVATION_FRACTION - fraction
        hyper_synthesis.append((tensor_to_array(layer.kernel) / 2.0**weight_fraction).astype(np.float32))
        hyper_synthesis.append((tensor_to_array(layer.bias) / 2.0 ** (fraction + weight_fraction)).astype(np.float32))
        fraction = ACTIVATION_FRACTION
    weights = {
        "analysis": float_layers(files.encoder.network.layers),
        "synthesis": float_layers(files.decoder.network.layers),
        "hyper_analysis": float_layers(files.encoder.network.hyper_analysis),
        "hyper_synthesis": hyper_synthesis,
        "z_prior": model.z_prior.get_weights(),
    }
    for name, grown in grow_weights(weights, model).items():
        model.parts()[name].set_weights(grown)
