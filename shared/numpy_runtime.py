"""Runs one model half with numpy alone: every layer and activation of the portable format, no TensorFlow.

The CPU path of the receiver and the sender. It computes in float32, as
TensorFlow does, so the two runtimes agree to float rounding (bench/runtimes.py
measures how often an 8-bit pixel or a rounded latent differs). Each is
deterministic on its own: the same input gives the same output on every call.

Convolutions are matrix multiplies (BLAS does the work): a convolution gathers
its input patches (im2col) and multiplies them by the kernel, or, when it has
few outputs, multiplies first and adds the shifted products; a transposed
convolution runs as stride x stride ordinary convolutions, one per phase of
the output grid. Large batches run in slices so that the patch matrix stays
small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from latentlink.shared.model_format import NetworkInfo, tensor_to_array
from latentlink.shared.proto import model_pb2

__all__ = ["NumpyNetwork"]

Array = np.ndarray
_SLICE_ELEMENTS = 1 << 23  # float32 elements of the largest intermediate a slice may hold (32 MB)
# BLAS sums a row of a product in an order that depends on where the row falls in the matrix (blocks of
# 16 rows, edge kernels, small-matrix paths): images are run in whole blocks of this many, padded with
# zeros, so an image decodes to the same floats in any batch (a resumed session is pixel-identical).
_ROW_BLOCK = 64


def _sigmoid(x: Array) -> Array:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32, copy=False)  # never overflows


_ACTIVATIONS: dict[int, Callable[[Array], Array]] = {
    model_pb2.ACTIVATION_LINEAR: lambda x: x,
    model_pb2.ACTIVATION_RELU: lambda x: np.maximum(x, 0.0, out=x),
    model_pb2.ACTIVATION_SIGMOID: _sigmoid,
    model_pb2.ACTIVATION_TANH: lambda x: np.tanh(x, out=x),
    model_pb2.ACTIVATION_LEAKY_RELU: lambda x: np.where(x > 0, x, np.float32(0.2) * x),
}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's SAME padding: output size, padding before, padding after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@dataclass(frozen=True)
class _Conv:
    kernel: Array  # [kh * kw * in, out] (gather) or [in, kh * kw * out] (scatter)
    bias: Array
    size: tuple[int, int]
    stride: int
    same: bool
    activation: Callable[[Array], Array]
    scatter: bool  # multiply first, then add shifted products: cheaper when out * stride^2 < in

    def __call__(self, x: Array) -> Array:
        (kh, kw), s = self.size, self.stride
        n, h, w, _ = x.shape
        if self.same:
            out_h, top, bottom = _same_padding(h, kh, s)
            out_w, left, right = _same_padding(w, kw, s)
            if top or bottom or left or right:
                x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        else:
            out_h, out_w = (h - kh) // s + 1, (w - kw) // s + 1
        rows, cols = (out_h - 1) * s + 1, (out_w - 1) * s + 1
        taps = [(i, j) for i in range(kh) for j in range(kw)]
        if self.scatter:
            products = (x.reshape(-1, x.shape[3]) @ self.kernel).reshape(*x.shape[:3], len(taps), -1)
            out = products[:, :rows:s, :cols:s, 0].copy()
            for t, (i, j) in enumerate(taps[1:], start=1):
                out += products[:, i : i + rows : s, j : j + cols : s, t]
        else:
            patches = np.concatenate([x[:, i : i + rows : s, j : j + cols : s] for i, j in taps], axis=3)
            out = (patches.reshape(n * out_h * out_w, -1) @ self.kernel).reshape(n, out_h, out_w, -1)
        out += self.bias
        return self.activation(out)

    def largest(self, shape: tuple[int, ...]) -> int:
        taps = self.size[0] * self.size[1]
        if self.scatter:  # the products, at every input position
            return (shape[0] + taps) * (shape[1] + taps) * self.kernel.shape[1]
        return -(-shape[0] // self.stride) * -(-shape[1] // self.stride) * self.kernel.shape[0]  # the patches


@dataclass(frozen=True)
class _Phase:
    """The output pixels (p + stride * a, q + stride * b) of a transposed convolution: an ordinary convolution.

    Output row p + stride * a sums input row a + shift @ tap row i over the taps i of its phase.
    """

    rows: tuple[int, int]  # p, and the input-row shift of each tap in this phase
    cols: tuple[int, int]
    row_shifts: tuple[int, ...]
    col_shifts: tuple[int, ...]
    kernel: Array  # [taps * in, out]


def _phases(kernel: Array, stride: int, same: bool) -> tuple[_Phase, ...]:
    """Splits a [kh, kw, out, in] transposed-convolution kernel into stride x stride phases."""
    kh, kw = kernel.shape[:2]
    top, left = (max(kh - stride, 0) // 2, max(kw - stride, 0) // 2) if same else (0, 0)

    def taps(
        p: int, offset: int, size: int
    ) -> list[tuple[int, int]]:  # (tap, input shift): s*y + tap - offset = p + s*a
        return [(i, (p + offset - i) // stride) for i in range(size) if (p + offset - i) % stride == 0]

    phases = []
    for p in range(stride):
        for q in range(stride):
            row_taps, col_taps = taps(p, top, kh), taps(q, left, kw)
            if not row_taps or not col_taps:
                continue  # a stride wider than the kernel: these pixels get the bias alone
            stacked = [kernel[i, j].T for i, _ in row_taps for j, _ in col_taps]  # each [in, out]
            phases.append(
                _Phase(
                    (p, 0),
                    (q, 0),
                    tuple(d for _, d in row_taps),
                    tuple(d for _, d in col_taps),
                    np.ascontiguousarray(np.concatenate(stacked, axis=0)),
                )
            )
    return tuple(phases)


@dataclass(frozen=True)
class _ConvTranspose:
    phases: tuple[_Phase, ...]
    bias: Array
    size: tuple[int, int]
    stride: int
    same: bool
    activation: Callable[[Array], Array]

    def __call__(self, x: Array) -> Array:
        (kh, kw), s = self.size, self.stride
        n, h, w, _ = x.shape
        out_h, out_w = (h * s, w * s) if self.same else (h * s + max(kh - s, 0), w * s + max(kw - s, 0))
        out = np.empty((n, out_h, out_w, len(self.bias)), np.float32)
        out[:] = self.bias
        for phase in self.phases:
            p, q = phase.rows[0], phase.cols[0]
            rows, cols = -(-(out_h - p) // s), -(-(out_w - q) // s)  # output pixels in this phase
            lo_r, hi_r = min(phase.row_shifts), max(phase.row_shifts)
            lo_c, hi_c = min(phase.col_shifts), max(phase.col_shifts)
            pad = (
                (0, 0),
                (max(-lo_r, 0), max(rows - 1 + hi_r - (h - 1), 0)),
                (max(-lo_c, 0), max(cols - 1 + hi_c - (w - 1), 0)),
                (0, 0),
            )
            padded = np.pad(x, pad) if any(a or b for a, b in pad) else x
            r0, c0 = pad[1][0], pad[2][0]
            patches = np.concatenate(
                [
                    padded[:, r0 + dr : r0 + dr + rows, c0 + dc : c0 + dc + cols]
                    for dr in phase.row_shifts
                    for dc in phase.col_shifts
                ],
                axis=3,
            )
            out[:, p::s, q::s] += (patches.reshape(n * rows * cols, -1) @ phase.kernel).reshape(n, rows, cols, -1)
        return self.activation(out)

    def largest(self, shape: tuple[int, ...]) -> int:
        return max(shape[0] * shape[1] * len(p.kernel) for p in self.phases)  # the largest phase's patches


@dataclass(frozen=True)
class _Dense:
    kernel: Array
    bias: Array
    activation: Callable[[Array], Array]

    def __call__(self, x: Array) -> Array:
        out = x @ self.kernel
        out += self.bias
        return self.activation(out)

    def largest(self, shape: tuple[int, ...]) -> int:
        return self.kernel.shape[1]


@dataclass(frozen=True)
class _GDN:
    beta: Array
    gamma: Array  # [in, out]: norm_i = sqrt(beta_i + sum_j gamma[j, i] x_j^2)
    inverse: bool

    def __call__(self, x: Array) -> Array:
        norm = np.sqrt(np.square(x) @ self.gamma + self.beta)
        return x * norm if self.inverse else x / norm

    def largest(self, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape))


@dataclass(frozen=True)
class _Elementwise:
    """Affine, Reshape and Flatten: no weights, no intermediate larger than the input."""

    function: Callable[[Array], Array]

    def __call__(self, x: Array) -> Array:
        return self.function(x)

    def largest(self, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape))


def _layer(layer: model_pb2.Layer, index: int):
    kind = layer.WhichOneof("kind")
    spec = getattr(layer, kind)
    if kind == "reshape":
        target = tuple(spec.shape)
        return _Elementwise(lambda x: x.reshape(len(x), *target))
    if kind == "flatten":
        return _Elementwise(lambda x: x.reshape(len(x), -1))
    if kind == "affine":
        scale, offset = np.float32(spec.scale), np.float32(spec.offset)
        return _Elementwise(lambda x: x * scale + offset)
    if kind == "gdn":
        return _GDN(tensor_to_array(spec.beta), tensor_to_array(spec.gamma), spec.inverse)
    kernel = tensor_to_array(spec.kernel, f"layer {index} kernel").astype(np.float32)
    bias = tensor_to_array(spec.bias, f"layer {index} bias").astype(np.float32)
    activation = _ACTIVATIONS[spec.activation]
    if kind == "dense":
        return _Dense(kernel, bias, activation)
    kh, kw = kernel.shape[:2]
    same = spec.padding == model_pb2.PADDING_SAME
    if kind == "conv2d":
        channels_in, channels_out = kernel.shape[2:]
        if channels_out * spec.stride**2 < channels_in:  # [in, kh * kw * out]
            flat, scatter = kernel.transpose(2, 0, 1, 3).reshape(channels_in, -1), True
        else:  # [kh * kw * in, out]
            flat, scatter = kernel.reshape(-1, channels_out), False
        return _Conv(np.ascontiguousarray(flat), bias, (kh, kw), spec.stride, same, activation, scatter)
    return _ConvTranspose(_phases(kernel, spec.stride, same), bias, (kh, kw), spec.stride, same, activation)


class NumpyNetwork:
    """A validated model half, ready to run on float32 batches with numpy (see the module docstring)."""

    def __init__(self, info: NetworkInfo) -> None:
        self.info = info
        self.layers = tuple(_layer(layer, index) for index, layer in enumerate(info.network.layers))
        self._largest: dict[tuple[int, ...], int] = {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Runs a float32 batch of shape (n, *input_shape) through the network."""
        batch = np.asarray(batch, np.float32)
        if len(batch.shape) != len(self.info.input_shape) + 1 or any(
            d and d != n for d, n in zip(self.info.input_shape, batch.shape[1:], strict=True)
        ):
            raise ValueError(f"batch shape {batch.shape[1:]} does not match input {self.info.input_shape}")
        if self.info.any_size:  # one image of its own size per call: nothing to share a matrix with
            return self._forward(batch)
        count = len(batch)
        padded = -(-count // _ROW_BLOCK) * _ROW_BLOCK
        if padded != count:
            batch = np.concatenate([batch, np.zeros((padded - count, *batch.shape[1:]), np.float32)])
        step = max(1, _SLICE_ELEMENTS // (_ROW_BLOCK * self._largest_per_image(batch.shape[1:]))) * _ROW_BLOCK
        if padded <= step:
            return self._forward(batch)[:count]
        return np.concatenate([self._forward(batch[i : i + step]) for i in range(0, padded, step)])[:count]

    def _forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer(x)
        return x

    def _largest_per_image(self, shape: tuple[int, ...]) -> int:
        """The most float32 elements any layer holds at once for one image of this input shape (found once)."""
        if shape not in self._largest:
            largest, x = 1, np.zeros((1, *shape), np.float32)
            for layer in self.layers:
                largest = max(largest, layer.largest(x.shape[1:]))
                x = layer(x)
            self._largest[shape] = max(largest, x.size)
        return self._largest[shape]
