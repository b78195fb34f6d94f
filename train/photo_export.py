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
from latentlink.train.photo_model import SCALE_LEVELS, SCALE_MAX, SCALE_MIN

__all__ = ["evaluate_photo_model", "integer_hyper_synthesis", "load_photo_model", "scale_tables", "write_photo_model"]

WEIGHT_BITS = 15  # integer kernels use at most 15 bits of magnitude
ACTIVATION_FRACTION = 10  # hidden activations and the output log-scale carry 10 fractional bits
PRECISION = 16
TAIL_MASS = 1e-9


def integer_hyper_synthesis(hyper_synthesis) -> tuple[list[model_pb2.IntegerConv], np.ndarray]:
    """Quantises the trained hyper-synthesis into integer layers, and the scale table into output thresholds.

    Layer l sees activations with F_in fractional bits (0 for z) and gets a
    kernel with F_w bits, as many as fit WEIGHT_BITS; its sum has F_in + F_w
    fractional bits, and the shift brings it to ACTIVATION_FRACTION.
    """
    layers, fraction = [], 0
    for layer in hyper_synthesis.layers:
        kernel, bias = layer.get_weights()
        config = layer.get_config()
        weight_fraction = WEIGHT_BITS - max(0, math.ceil(math.log2(float(np.abs(kernel).max()) + 1e-12)))
        total = fraction + weight_fraction
        if total < ACTIVATION_FRACTION:
            raise ValueError(f"hyper-synthesis weights too large to quantise ({np.abs(kernel).max():.3g})")
        int_kernel = np.round(kernel.astype(np.float64) * 2.0**weight_fraction).astype(np.int32)
        int_bias = np.round(bias.astype(np.float64) * 2.0**total)
        if np.abs(int_bias).max() >= 2**31:
            raise ValueError("hyper-synthesis bias too large to quantise")
        layers.append(
            model_pb2.IntegerConv(
                transpose=type(layer).__name__ == "Conv2DTranspose",
                stride=int(config["strides"][0]),
                kernel=tensor_from_array(int_kernel),
                bias=tensor_from_array(int_bias.astype(np.int32)),
                shift=total - ACTIVATION_FRACTION,
                relu=config["activation"] == "relu",
            )
        )
        fraction = ACTIVATION_FRACTION
    log_scales = np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS)
    midpoints = (log_scales[1:] + log_scales[:-1]) / 2
    thresholds = np.ceil(midpoints * 2.0**ACTIVATION_FRACTION).astype(np.int32)
    return layers, thresholds


def scale_tables() -> EntropyTables:
    """Integer tables for a zero-mean Gaussian of each scale in the table, convolved with a unit uniform."""
    from latentlink.train.factorized_prior import _quantize

    scales = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))
    rows = []
    for scale in scales:
        half = max(1, math.ceil(scale * math.sqrt(2) * _erfc_inverse(TAIL_MASS)))
        values = np.arange(-half, half + 1)
        cdf = np.array([0.5 * math.erfc(-v / (scale * math.sqrt(2))) for v in np.append(values - 0.5, half + 0.5)])
        pmf = np.diff(cdf)
        rows.append((-half, _quantize(np.append(pmf, max(1.0 - pmf.sum(), 0.0)), PRECISION)))
    width = max(len(r) for _, r in rows)
    pmfs = np.zeros((len(rows), width), np.int32)
    for i, (_, row) in enumerate(rows):
        pmfs[i, : len(row)] = row
    offsets = np.array([o for o, _ in rows], np.int32)
    lengths = np.array([len(r) for _, r in rows], np.int32)
    return EntropyTables(offsets, lengths, pmfs, PRECISION)


def _erfc_inverse(mass: float) -> float:
    """x with erfc(x) = mass, by bisection (mass in (0, 1))."""
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > mass else (lo, mid)
    return hi


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
        )
    )
    card = {
        "family": "photo-hyperprior",
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
    from latentlink.shared.photo_codec import PhotoDecoder, PhotoEncoder

    encoder, decoder = PhotoEncoder(files.encoder, files.decoder, "cpu"), PhotoDecoder(files.decoder)
    bpps, psnrs, enc_s, dec_s = [], [], 0.0, 0.0
    for image in images:
        h, w = image.shape[:2]
        start = time.perf_counter()
        _, data = encoder.encode(image)
        enc_s += time.perf_counter() - start
        start = time.perf_counter()
        _, decoded = decoder.decode(data, h, w, image.shape[2] if image.ndim == 3 else 1)
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
    """Loads a shipped or exported photo model's weights into a PhotoModel of the same shape, to train it further.

    The transforms come back exactly; the hyper-synthesis from its integer
    weights (within their rounding); the prior over z, which the files hold
    only as frozen tables, starts afresh.
    """
    from latentlink.shared.model_format import tensor_to_array

    def float_layers(keras_model, portable_layers) -> None:
        weights = []
        for layer in portable_layers:
            kind = layer.WhichOneof("kind")
            spec = getattr(layer, kind)
            if kind == "gdn":  # trained as squares: beta = beta_root^2 + 1e-6, gamma = gamma_root^2
                beta, gamma = tensor_to_array(spec.beta), tensor_to_array(spec.gamma)
                weights += [np.sqrt(np.maximum(beta - 1e-6, 0)), np.sqrt(gamma)]
            elif kind in ("conv2d", "conv2d_transpose"):
                weights += [tensor_to_array(spec.kernel), tensor_to_array(spec.bias)]
        keras_model.set_weights(weights)

    float_layers(model.analysis, files.encoder.network.layers)
    float_layers(model.synthesis, files.decoder.network.layers)
    float_layers(model.hyper_analysis, files.encoder.network.hyper_analysis)
    weights, fraction = [], 0
    for layer in files.decoder.network.hyperprior.layers:
        weight_fraction = layer.shift + ACTIVATION_FRACTION - fraction
        weights.append((tensor_to_array(layer.kernel) / 2.0**weight_fraction).astype(np.float32))
        weights.append((tensor_to_array(layer.bias) / 2.0 ** (fraction + weight_fraction)).astype(np.float32))
        fraction = ACTIVATION_FRACTION
    model.hyper_synthesis.set_weights(weights)
