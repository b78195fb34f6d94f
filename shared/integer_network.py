"""Runs a hyperprior's integer network exactly, the same on every machine (see IntegerConv in model.proto).

Activations and weights are integers, and the loader has checked that no
sum can reach 2^53; so float64 holds every partial sum exactly, and BLAS may
add them in any order, with or without fused multiply-adds, and still give
the same integers on any machine. Division by 2^shift is exact too, and floor
is then exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentlink.shared.model_format import INTEGER_BOUND, tensor_to_array
from latentlink.shared.numpy_runtime import same_padding
from latentlink.shared.proto import model_pb2

__all__ = ["IntegerLayer", "IntegerNetwork", "conv2d_same", "conv2d_transpose_same"]


def conv2d_same(x: np.ndarray, kernel: np.ndarray, stride: int, lattice: tuple[int, int] | None = None) -> np.ndarray:
    """Conv2D with PADDING_SAME on one (h, w, in) array; kernel [kh, kw, in, out]; float64 sums.

    `lattice` (row, column): only the outputs at rows row::2 and columns column::2, the same values as those of
    the whole output (a checkerboard's positions that are not anchors are two such lattices).
    """
    kh, kw = kernel.shape[:2]
    h, w = x.shape[:2]
    (out_h, top, bottom), (out_w, left, right) = same_padding(h, kh, stride), same_padding(w, kw, stride)
    first, step = lattice or (0, 0), 2 if lattice else 1
    out_h, out_w = len(range(first[0], out_h, step)), len(range(first[1], out_w, step))
    out = np.zeros((out_h, out_w, kernel.shape[3]))
    if not out.size:
        return out
    padded = np.pad(x, ((top, bottom), (left, right), (0, 0)))
    for i in range(kh):
        for j in range(kw):
            used = np.flatnonzero(kernel[i, j].any(axis=1))  # inputs this tap reads (a checkerboard reads few)
            if len(used):
                inputs = slice(used[0], used[-1] + 1)
                row, column = first[0] * stride + i, first[1] * stride + j
                rows = slice(row, row + (out_h - 1) * stride * step + 1, stride * step)
                columns = slice(column, column + (out_w - 1) * stride * step + 1, stride * step)
                out += padded[rows, columns, inputs] @ kernel[i, j, inputs]
    return out


def conv2d_transpose_same(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Conv2DTranspose with PADDING_SAME on one (h, w, in) array; kernel [kh, kw, out, in]; float64 sums."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[:2]
    full = np.zeros(((h - 1) * stride + kh, (w - 1) * stride + kw, kernel.shape[2]))
    for i in range(kh):
        for j in range(kw):
            full[i : i + (h - 1) * stride + 1 : stride, j : j + (w - 1) * stride + 1 : stride] += x @ kernel[i, j].T
    top, left = max(kh - stride, 0) // 2, max(kw - stride, 0) // 2
    return full[top : top + h * stride, left : left + w * stride]


@dataclass(frozen=True)
class IntegerLayer:
    transpose: bool
    stride: int
    kernel: np.ndarray  # float64 holding int32 values
    bias: np.ndarray
    shift: int
    relu: bool

    def __call__(self, x: np.ndarray, lattice: tuple[int, int] | None = None) -> np.ndarray:
        """The layer's integer output (`lattice`: only there, see `conv2d_same`; not for a transposed layer)."""
        if self.transpose:
            conv = conv2d_transpose_same(x, self.kernel, self.stride)
        else:
            conv = conv2d_same(x, self.kernel, self.stride, lattice)
        out = np.floor((conv + self.bias) / float(1 << self.shift))
        if self.relu:
            out = np.maximum(out, 0.0)
        return np.clip(out, -INTEGER_BOUND, INTEGER_BOUND)


@dataclass(frozen=True)
class IntegerNetwork:
    """A prior's integer network (a hyper-synthesis, a context prior's MADE) and the thresholds that turn its
    log-scale outputs into table rows; what the outputs mean is the prior's own code's to say."""

    layers: tuple[IntegerLayer, ...]
    thresholds: np.ndarray  # int64, ascending

    @classmethod
    def from_proto(
        cls, prior: model_pb2.HyperPrior | model_pb2.ContextPrior, layers: Sequence[model_pb2.IntegerConv] = ()
    ) -> IntegerNetwork:
        """Reads a validated prior's integer network: its `layers`, or other layers of it (a hyperprior's
        context) with the same thresholds."""
        layers = tuple(
            IntegerLayer(
                layer.transpose,
                layer.stride,
                tensor_to_array(layer.kernel).astype(np.float64),
                tensor_to_array(layer.bias).astype(np.float64),
                layer.shift,
                layer.relu,
            )
            for layer in (layers or prior.layers)
        )
        return cls(layers, tensor_to_array(prior.thresholds).astype(np.int64))

    def outputs(self, z: np.ndarray, lattice: tuple[int, int] | None = None) -> np.ndarray:
        """The network's integer output for integer z, as float64 (`lattice`: only there, for a network of one
        stride-1 layer; see `conv2d_same`)."""
        x = np.clip(np.asarray(z, np.float64), -INTEGER_BOUND, INTEGER_BOUND)
        if lattice is not None and (len(self.layers) != 1 or self.layers[0].transpose or self.layers[0].stride != 1):
            raise ValueError("only a network of one stride-1 convolution is computed on a lattice")
        for layer in self.layers:
            x = layer(x, lattice)
        return x

    @property
    def positionwise(self) -> bool:
        """Whether every layer is 1x1: each output position depends on that position's inputs alone."""
        return all(layer.kernel.shape[:2] == (1, 1) for layer in self.layers)
