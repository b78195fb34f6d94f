"""Freezing trained float pieces into what both ends compute exactly: integer layers, thresholds, integer tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.model_format import tensor_from_array
from latentlink.shared.proto import model_pb2

__all__ = [
    "ACTIVATION_FRACTION",
    "PRECISION",
    "gaussian_tables",
    "integer_layer",
    "log_thresholds",
]

WEIGHT_BITS = 15  # integer kernels use at most 15 bits of magnitude
ACTIVATION_FRACTION = 10  # hidden activations and outputs carry 10 fractional bits
PRECISION = 16  # table frequencies sum to 2^16
TAIL_MASS = 1e-9  # what a table leaves to its escape symbol


def integer_layer(
    kernel: np.ndarray,
    bias: np.ndarray,
    input_fraction: int,
    relu: bool,
    transpose: bool = False,
    stride: int = 1,
) -> model_pb2.IntegerConv:
    """One trained layer as an IntegerConv whose output has ACTIVATION_FRACTION fractional bits.

    Its input has `input_fraction` fractional bits (0 for integer latents); the
    kernel gets as many as fit WEIGHT_BITS, F_w; the sum then has
    input_fraction + F_w and the shift brings it to ACTIVATION_FRACTION. A
    dense kernel [in, out] becomes a 1x1 convolution.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim == 2:
        kernel = kernel[None, None]
    weight_fraction = WEIGHT_BITS - max(0, math.ceil(math.log2(float(np.abs(kernel).max()) + 1e-12)))
    total = input_fraction + weight_fraction
    if total < ACTIVATION_FRACTION:
        raise ValueError(f"weights too large to quantise ({np.abs(kernel).max():.3g})")
    int_bias = np.round(np.asarray(bias, np.float64) * 2.0**total)
    if np.abs(int_bias).max() >= 2**31:
        raise ValueError("bias too large to quantise")
    return model_pb2.IntegerConv(
        transpose=transpose,
        stride=stride,
        kernel=tensor_from_array(np.round(kernel * 2.0**weight_fraction).astype(np.int32)),
        bias=tensor_from_array(int_bias.astype(np.int32)),
        shift=total - ACTIVATION_FRACTION,
        relu=relu,
    )


def log_thresholds(scales: np.ndarray) -> np.ndarray:
    """Integer thresholds on a log-scale output (ACTIVATION_FRACTION bits) between neighbouring scales."""
    log_scales = np.log(scales)
    midpoints = (log_scales[1:] + log_scales[:-1]) / 2
    return np.ceil(midpoints * 2.0**ACTIVATION_FRACTION).astype(np.int32)


def gaussian_tables(scales: Sequence[float], centres: Sequence[float] = (0.0,)) -> EntropyTables:
    """Integer tables of Gaussians convolved with a unit uniform: row c * len(scales) + s has mean
    centres[c] and scale scales[s], over the integers around 0 holding all but TAIL_MASS of it."""
    from latentlink.train.factorized_prior import _quantize

    spread = math.sqrt(2) * _erfc_inverse(TAIL_MASS)
    rows = []
    for centre in centres:
        for scale in scales:
            half = max(1, math.ceil(scale * spread + abs(centre)))
            edges = np.append(np.arange(-half, half + 1) - 0.5, half + 0.5) - centre
            cdf = np.array([0.5 * math.erfc(-edge / (scale * math.sqrt(2))) for edge in edges])
            pmf = np.diff(cdf)
            rows.append((-half, _quantize(np.append(pmf, max(1.0 - pmf.sum(), 0.0)), PRECISION)))
    width = max(len(row) for _, row in rows)
    pmfs = np.zeros((len(rows), width), np.int32)
    for i, (_, row) in enumerate(rows):
        pmfs[i, : len(row)] = row
    offsets = np.array([offset for offset, _ in rows], np.int32)
    lengths = np.array([len(row) for _, row in rows], np.int32)
    return EntropyTables(offsets, lengths, pmfs, PRECISION)


def _erfc_inverse(mass: float) -> float:
    """x with erfc(x) = mass, by bisection (mass in (0, 1))."""
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > mass else (lo, mid)
    return hi
