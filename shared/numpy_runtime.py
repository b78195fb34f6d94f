"""Runs one model half with numpy alone: every layer and activation of the portable format, no TensorFlow.

The CPU path of the receiver and the sender for networks the LiteRT runtime does
not express (shared/litert_runtime.py: images of any size, GDN, affine; the
photo models), and its reference. It computes in float32, as
TensorFlow does, so the two runtimes agree to float rounding
(tests/unit/test_numpy_runtime.py bounds how often an 8-bit pixel or a rounded
latent differs). Each is deterministic on its own, whatever the batch.

Convolutions are matrix multiplies (BLAS does the work): a convolution gathers
its input patches with one precomputed index (im2col) and multiplies them by
the kernel, or, when it has few outputs, multiplies every pixel by every tap
first and adds up shifted slices of the products; a transposed convolution runs as one convolution whose
outputs are its stride x stride output phases, each phase multiplying only the taps it reads, then
interleaves them, or, with few outputs, multiplies every pixel by every tap and adds what lands on each
output. Large batches run in slices and large images in bands, so intermediates stay small.

With `set_threads(n)`, a batch of digits is cut into n parts of whole row
blocks that run at once on n threads (numpy and BLAS release the GIL): every
layer's work, not only the matrix products, then uses n cores, and each image
still gives the same floats (the commands run BLAS itself on one thread).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentlink.shared.model_format import NetworkInfo, spatial_output, tensor_to_array
from latentlink.shared.proto import model_pb2

__all__ = ["NumpyNetwork", "as_batch", "same_padding", "set_threads", "thread_count"]

Array = np.ndarray
# float32 elements of the largest intermediate a slice may hold (4 MB): a slice's layers then work in cache (the
# default digit encoder ran 1.1-1.4x faster than with 32 MB slices, decoders the same: bench/RESULTS.md).
_SLICE_ELEMENTS = 1 << 20
# BLAS sums a row of a product in an order that depends on where the row falls in the matrix (blocks of
# 16 rows, edge kernels, small-matrix paths): images are run in whole blocks of this many, padded with
# zeros, so an image decodes to the same floats in any batch (a resumed session is pixel-identical).
_ROW_BLOCK = 64
# Patch elements gathered at once (2 MB): a convolution goes in bands of outputs that stay in cache (a digit
# decoder's largest layer ran 1.3x faster than in bands of 8 MB; the same floats either way).
_BAND_ELEMENTS = 1 << 19
_threads = 1  # threads a batch is cut over (set_threads)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_local = threading.local()  # in_pool: this thread is one of the pool's, running a part of some work


def set_threads(count: int) -> None:
    """Cuts work over up to `count` threads (1: all in the calling thread); see `_run_all`."""
    global _threads, _pool, _pool_size
    with _pool_lock:
        _threads = max(1, count)
        if _threads > _pool_size:
            _pool, _pool_size = ThreadPoolExecutor(_threads, thread_name_prefix="numpy-runtime"), _threads


def thread_count() -> int:
    """The threads work is cut over (`set_threads`)."""
    return _threads


def _run_all(function: Callable[[Any], Any], items: list) -> list:
    """`function` of each item, in order: on the runtime's threads when there are several items and the
    caller is not one of those threads itself (it would wait on the pool it occupies), else here."""
    if _threads > 1 and _pool is not None and len(items) > 1 and not getattr(_local, "in_pool", False):
        return list(_pool.map(lambda item: _in_pool(function, item), items))
    return [function(item) for item in items]


def _in_pool(function: Callable[[Any], Any], item: Any) -> Any:
    _local.in_pool = True
    try:
        return function(item)
    finally:
        _local.in_pool = False


def _sigmoid(x: Array) -> Array:
    """0.5 (1 + tanh(x / 2)), which never overflows, in place like the other activations (x is a layer's own
    output): the same float32 operations in the same order, without three temporaries."""
    x *= np.float32(0.5)
    np.tanh(x, out=x)
    x += np.float32(1.0)
    x *= np.float32(0.5)
    return x


# Zeros to take the maximum with, a part of an activation at a time: numpy's maximum of two arrays runs about 4x
# faster than that of an array and a scalar (numpy 2.4 here: bench/RESULTS.md), for the same floats.
_ZEROS = np.zeros(1 << 18, np.float32)
_ZEROS.flags.writeable = False


def _relu(x: Array) -> Array:
    """max(x, 0) in place (x is a layer's own output, contiguous)."""
    if not x.flags.c_contiguous:
        return np.maximum(x, 0.0, out=x)
    flat = x.reshape(-1)
    for first in range(0, flat.size, _ZEROS.size):
        part = flat[first : first + _ZEROS.size]
        np.maximum(part, _ZEROS[: part.size], out=part)
    return x


_ACTIVATIONS: dict[int, Callable[[Array], Array]] = {
    model_pb2.ACTIVATION_LINEAR: lambda x: x,
    model_pb2.ACTIVATION_RELU: _relu,
    model_pb2.ACTIVATION_SIGMOID: _sigmoid,
    model_pb2.ACTIVATION_TANH: lambda x: np.tanh(x, out=x),
    model_pb2.ACTIVATION_LEAKY_RELU: lambda x: np.multiply(x, np.float32(0.2), out=x, where=x < 0),
}  # each in place, on a layer's own output (contiguous or a view of it)


class _LayoutCache:
    """A layer's gather layouts for the last few input sizes (photos come in every size: keep it bounded)."""

    def __init__(self, entries: int = 4) -> None:
        self.entries, self._layouts, self._lock = entries, {}, threading.Lock()

    def get(self, key, build: Callable[[], tuple]) -> tuple:
        with self._lock:
            found = self._layouts.get(key)
        if found is None:
            found = build()
            with self._lock:
                self._layouts[key] = found
                while len(self._layouts) > self.entries:
                    self._layouts.pop(next(iter(self._layouts)))
        return found


def as_batch(batch, input_shape: tuple[int, ...]) -> Array:
    """A float32 batch of shape (n, *input_shape) (0 in input_shape: any size); ValueError for another shape."""
    batch = np.asarray(batch, np.float32)
    if len(batch.shape) != len(input_shape) + 1 or any(
        d and d != n for d, n in zip(input_shape, batch.shape[1:], strict=True)
    ):
        raise ValueError(f"batch shape {batch.shape[1:]} does not match input {input_shape}")
    return batch


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's SAME padding: output size, padding before, padding after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@dataclass(frozen=True)
class _Gather:
    """Which pixel of an h x w image each patch element reads (`index`), and the elements outside the image."""

    index: np.ndarray
    outside: np.ndarray  # positions in `index` that read zero padding (their index is a dummy 0)

    @classmethod
    def of(cls, h: int, w: int, rows: np.ndarray, cols: np.ndarray) -> _Gather:
        inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).ravel()
        return cls(np.where(inside, (rows * w + cols).ravel(), 0), np.flatnonzero(~inside))

    def __call__(self, pixels: Array, start: int = 0, stop: int | None = None) -> Array:
        """(n, h * w, c) pixels -> (n, stop - start, c) for index[start:stop]: an indexed copy, padding zeroed."""
        stop = len(self.index) if stop is None else stop
        patches = np.take(pixels, self.index[start:stop], axis=1)
        first, last = np.searchsorted(self.outside, (start, stop))
        if last > first:
            patches[:, self.outside[first:last] - start] = 0.0
        return patches


def _in_bands(count: int, elements_each: int, run: Callable[[int, int], None]) -> None:
    """`run(first, last)` over `count` items in bands of about _BAND_ELEMENTS elements (`elements_each` per
    item), so that each band's intermediates stay in cache; outside the runtime's own threads, the bands run on
    them. Each band must write only its own items: the same floats in any order."""
    band = max(1, _BAND_ELEMENTS // elements_each)
    _run_all(lambda first: run(first, min(first + band, count)), list(range(0, count, band)))


@dataclass(frozen=True)
class _Product:
    """A patch matrix [rows, inputs] times a kernel, as products of column blocks: each block multiplies the
    patch columns lo:hi by its part of the kernel into output columns first:last. An ordinary convolution is one
    block; a transposed one has a block per output phase, each reading only the taps that phase uses."""

    blocks: tuple[tuple[int, int, int, int, Array], ...]  # (lo, hi, first, last, kernel[hi - lo, last - first])
    inputs: int
    outputs: int

    @classmethod
    def whole(cls, kernel: Array) -> _Product:
        return cls(((0, kernel.shape[0], 0, kernel.shape[1], kernel),), *kernel.shape)

    def __call__(self, patches: Array, out: Array) -> None:
        """Writes patches @ kernel into `out` (rows of the output matrix), BLAS writing straight into it."""
        for lo, hi, first, last, kernel in self.blocks:
            np.matmul(patches[:, lo:hi], kernel, out=out[:, first:last])


def _patch_product(
    pixels: Array, gather: _Gather, product: _Product, bias: Array, activation: Callable[[Array], Array]
) -> Array:
    """(n, h * w, c) pixels -> (n * outputs, out): activation(every output's patch times the kernel + bias).

    The work goes in bands small enough that each band's patches and products stay in cache while the bias and
    the activation are applied: bands of whole images for a batch, whose products go straight into their own
    rows of the output (no copy), and bands of outputs for one image of any size. Outside the runtime's own
    threads, the bands run on them (a photo's convolution uses every core).
    """
    n, _, c = pixels.shape
    taps = product.inputs // c
    outputs = len(gather.index) // taps
    out = np.empty((n * outputs, product.outputs), np.float32)
    rows_each = outputs if n > 1 else 1  # rows of `out` per item of a band: a whole image's, or one output's
    item_bias = np.tile(bias, rows_each)  # added an item at a time: numpy adds a few long rows faster than many short

    def run(first: int, last: int) -> None:  # one band: its rows of `out` are contiguous
        patches = gather(pixels[first:last]) if n > 1 else gather(pixels, first * taps, last * taps)
        rows = out[first * rows_each : last * rows_each]
        product(patches.reshape(len(rows), -1), rows)
        items = rows.reshape(last - first, -1)
        np.add(items, item_bias, out=items)
        activation(rows)

    _in_bands(n if n > 1 else outputs, rows_each * product.inputs, run)
    return out


def _reading(outputs: int, size: int, shift: int, stride: int) -> tuple[int, int]:
    """The outputs o (first, past the last) whose input o * stride + shift lies inside 0..size-1."""
    return max(0, -(shift // stride)), min(outputs, (size - 1 - shift) // stride + 1)


@dataclass(frozen=True)
class _Conv:
    """Conv2D: gathers each output's input patch (im2col, one indexed copy) and multiplies it by the kernel."""

    product: _Product  # the kernel as [kh * kw * in, out], one block
    bias: Array
    size: tuple[int, int]
    stride: int
    same: bool
    activation: Callable[[Array], Array]
    few_outputs: bool  # multiply every pixel by every tap first, then sum shifted slices of the products
    per_pixel: Array | None  # with few outputs: the kernel as [in, kh * kw * out], every tap of a pixel at once
    _layouts: _LayoutCache = field(default_factory=_LayoutCache, compare=False)

    @classmethod
    def build(cls, kernel: Array, bias: Array, stride: int, same: bool, activation) -> _Conv:
        kh, kw, c, out = kernel.shape
        few = out * kh * kw < c
        per_pixel = np.ascontiguousarray(kernel.transpose(2, 0, 1, 3).reshape(c, -1)) if few else None
        flat = np.ascontiguousarray(kernel.reshape(-1, out))  # [kh * kw * in, out]
        return cls(_Product.whole(flat), bias, (kh, kw), stride, same, activation, few, per_pixel)

    def _layout(self, h: int, w: int) -> tuple[int, int, int, int, _Gather | None]:
        """Output size, padding before (top, left), and which input pixel each patch element reads (im2col only)."""
        (kh, kw), s = self.size, self.stride
        if self.same:
            (out_h, top, _), (out_w, left, _) = same_padding(h, kh, s), same_padding(w, kw, s)
        else:
            out_h, out_w, top, left = (h - kh) // s + 1, (w - kw) // s + 1, 0, 0
        if self.few_outputs:
            return out_h, out_w, top, left, None
        oy, ox, i, j = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(kh), np.arange(kw), indexing="ij")
        return out_h, out_w, top, left, _Gather.of(h, w, oy * s + i - top, ox * s + j - left)

    def __call__(self, x: Array) -> Array:
        n, h, w, c = x.shape
        out_h, out_w, top, left, gather = self._layouts.get((h, w), lambda: self._layout(h, w))
        if gather is None:
            out = self._tap_sums(x, out_h, out_w, top, left)
            out += self.bias
            out = self.activation(out)
        else:
            out = _patch_product(x.reshape(n, h * w, c), gather, self.product, self.bias, self.activation)
        return out.reshape(n, out_h, out_w, -1)

    def _tap_sums(self, x: Array, out_h: int, out_w: int, top: int, left: int) -> Array:
        """With few outputs: every pixel times every tap at once, tap-major (each tap's products contiguous), then
        each output sums its taps' products, tap by tap in order, each tap's read as one shifted slice."""
        n, h, w, c = x.shape
        (kh, kw), s = self.size, self.stride
        channels = self.product.outputs
        products = (self.per_pixel.T @ x.reshape(-1, c).T).reshape(kh * kw, channels, n, h, w)
        out = np.zeros((channels, n, out_h, out_w), np.float32)
        for i in range(kh):
            (r0, r1), dy = _reading(out_h, h, i - top, s), i - top
            for j in range(kw):
                (c0, c1), dx = _reading(out_w, w, j - left, s), j - left
                if r1 > r0 and c1 > c0:
                    out[:, :, r0:r1, c0:c1] += products[
                        i * kw + j,
                        :,
                        :,
                        r0 * s + dy : (r1 - 1) * s + dy + 1 : s,
                        c0 * s + dx : (c1 - 1) * s + dx + 1 : s,
                    ]
        return np.ascontiguousarray(out.transpose(1, 2, 3, 0)).reshape(n * out_h * out_w, channels)

    def largest(self, shape: tuple[int, ...]) -> int:
        return -(-shape[0] // self.stride) * -(-shape[1] // self.stride) * self.product.inputs  # the patches


def _landing(first: int, last: int, lo: int, hi: int, shift: int, stride: int) -> tuple[int, int]:
    """The inputs a in first..last-1 (first, past the last) whose output a * stride + shift lies in lo..hi-1."""
    return max(first, -((shift - lo) // stride)), min(last, (hi - 1 - shift) // stride + 1)


def _position_order(used: np.ndarray) -> np.ndarray:
    """An order of a window's positions in which the positions each phase reads (used[phase, position]) span the
    fewest positions in all, phase by phase: every order is tried for windows of up to 6 positions (720 orders;
    row-major first, so it wins ties), row-major for larger ones (a 5x5 kernel at stride 2: 28 of 36)."""
    count = used.shape[1]
    if count > 6:
        return np.arange(count)
    orders = np.array(list(itertools.permutations(range(count))))
    ranks = np.argsort(orders, axis=1)[:, None, :]  # [order, 1, position]
    spans = np.where(used, ranks, -1).max(axis=2) - np.where(used, ranks, count).min(axis=2) + 1
    return orders[np.argmin(np.where(used.any(axis=1), spans, 0).sum(axis=1))]


@dataclass(frozen=True)
class _ConvTranspose:
    """Conv2DTranspose as one convolution whose outputs are the stride x stride output phases, then interleaved.

    Output pixel p + s * a (per axis) sums input a + shift times tap i, over the taps i whose
    (p + offset - i) is a multiple of s, shift = (p + offset - i) / s: each phase is an ordinary
    convolution over a small window of shifts, and all phases together are one with s * s * out outputs.
    Phases use different taps (a 3x3 kernel at stride 2: 4, 2, 2 and 1 of the window's 4 shifts), so each
    phase multiplies only the patch columns of its own shifts: the window's shifts are ordered so that each
    phase's are as nearly contiguous as can be (a 3x3 kernel at stride 2: exactly, 9 of 16 products).

    With few outputs (a photo decoder's last layer: 3 of 64 channels) a phase's product would be a few columns
    wide, which BLAS runs at a fraction of its speed: every input pixel is multiplied by every tap at once instead
    (one product kh * kw * out wide), and each output adds the products that land on it (`_tap_sums`).
    """

    product: _Product  # [window positions * in, s * s * out] in column blocks, a block per phase
    bias: Array  # [s * s * out]: every phase's
    size: tuple[int, int]
    stride: int
    same: bool
    activation: Callable[[Array], Array]
    positions: np.ndarray  # [window positions, 2]: each patch position's input shift (rows, columns), in order
    offsets: tuple[int, int]  # input pixel a lands, through tap i, on output a * stride + i - offset (per axis)
    taps: Array | None  # with few outputs: the kernel as [kh * kw * out, in], every tap of a pixel at once
    _layouts: _LayoutCache = field(default_factory=_LayoutCache, compare=False)

    @classmethod
    def build(cls, kernel: Array, bias: Array, stride: int, same: bool, activation) -> _ConvTranspose:
        kh, kw, out, c = kernel.shape
        offsets = (max(kh - stride, 0) // 2, max(kw - stride, 0) // 2) if same else (0, 0)
        taps = [  # per axis: (phase, tap, shift)
            [(p, i, (p + off - i) // stride) for p in range(stride) for i in range(k) if (p + off - i) % stride == 0]
            for k, off in zip((kh, kw), offsets, strict=True)
        ]
        lows = [min(d for _, _, d in axis) for axis in taps]
        window = [max(d for _, _, d in axis) - low + 1 for axis, low in zip(taps, lows, strict=True)]
        merged = np.zeros((window[0], window[1], c, stride, stride, out), np.float32)
        used = np.zeros((stride, stride, window[0], window[1]), bool)  # phase (p, q) reads window position
        for p, i, di in taps[0]:
            for q, j, dj in taps[1]:
                merged[di - lows[0], dj - lows[1], :, p, q] = kernel[i, j].T
                used[p, q, di - lows[0], dj - lows[1]] = True
        used = used.reshape(stride * stride, -1)
        order = _position_order(used)
        merged = merged.reshape(len(order), c, stride * stride, out)[order]
        ranks = np.argsort(order)
        blocks = []
        for phase, reads in enumerate(used):
            first, last = (ranks[reads].min(), ranks[reads].max() + 1) if reads.any() else (0, 0)
            part = np.ascontiguousarray(merged[first:last, :, phase].reshape(-1, out))
            blocks.append((first * c, last * c, phase * out, (phase + 1) * out, part))
        grid = np.stack(
            np.meshgrid(*(np.arange(low, low + size) for low, size in zip(lows, window, strict=True)), indexing="ij")
        )
        return cls(
            _Product(tuple(blocks), len(order) * c, stride * stride * out),
            np.tile(bias, stride * stride),
            (kh, kw),
            stride,
            same,
            activation,
            grid.reshape(2, -1).T[order],
            offsets,
            kernel.reshape(-1, c) if 4 * out <= c else None,
        )

    def _layout(self, h: int, w: int) -> tuple[int, int, int, int, _Gather]:
        s = self.stride
        out_h, out_w = self._output_size(h, w)
        rows, cols = -(-out_h // s), -(-out_w // s)  # outputs per phase
        a, b = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # [rows, cols, 1] + [positions]
        gather = _Gather.of(h, w, a[..., None] + self.positions[:, 0], b[..., None] + self.positions[:, 1])
        return out_h, out_w, rows, cols, gather

    def __call__(self, x: Array) -> Array:
        if self.taps is not None:
            return self._tap_sums(x)
        n, h, w, c = x.shape
        s = self.stride
        out_h, out_w, rows, cols, gather = self._layouts.get((h, w), lambda: self._layout(h, w))
        # The bias and activation act per pixel, so they apply to the phases before they are interleaved.
        phases = _patch_product(x.reshape(n, h * w, c), gather, self.product, self.bias, self.activation)
        out = phases.reshape(n, rows, cols, s, s, -1).transpose(0, 1, 3, 2, 4, 5).reshape(n, rows * s, cols * s, -1)
        return out[:, :out_h, :out_w]

    def _output_size(self, h: int, w: int) -> tuple[int, int]:
        return spatial_output("conv2d_transpose", (h, w), self.size, self.stride, self.same)

    def _tap_sums(self, x: Array) -> Array:
        """With few outputs: in bands of output rows (of images, for a batch), every input pixel that reaches the
        band times every tap at once (channel planes, tap-major), then each output adds its taps' products, tap by
        tap in order, each tap's as one slice of stride s: the same floats however the bands fall."""
        n, h, w, c = x.shape
        (kh, kw), s, (top, left) = self.size, self.stride, self.offsets
        channels = len(self.taps) // (kh * kw)
        out_h, out_w = self._output_size(h, w)
        out = np.empty((channels, n, out_h, out_w), np.float32)

        def fill(n0: int, n1: int, y0: int, y1: int) -> None:
            block = out[:, n0:n1, y0:y1]
            block[...] = 0.0
            a0, a1 = _landing(0, h, y0, y1, kh - 1 - top, s)[0], _landing(0, h, y0, y1, -top, s)[1]
            if a1 > a0:
                part = x[n0:n1, a0:a1].reshape(-1, c)
                products = (self.taps @ part.T).reshape(kh, kw, channels, n1 - n0, a1 - a0, w)
                for i in range(kh):
                    r0, r1 = _landing(a0, a1, y0, y1, i - top, s)
                    for j in range(kw):
                        c0, c1 = _landing(0, w, 0, out_w, j - left, s)
                        if r1 > r0 and c1 > c0:
                            rows = slice(r0 * s + i - top - y0, (r1 - 1) * s + i - top - y0 + 1, s)
                            cols = slice(c0 * s + j - left, (c1 - 1) * s + j - left + 1, s)
                            block[:, :, rows, cols] += products[i, j, :, :, r0 - a0 : r1 - a0, c0:c1]
            block += self.bias[:channels, None, None, None]
            self.activation(block)

        if n > 1:  # bands of whole images
            _in_bands(n, len(self.taps) * h * w, lambda first, last: fill(first, last, 0, out_h))
        else:  # bands of output rows: each reads the input rows that reach it
            _in_bands(out_h, len(self.taps) * w // s + 1, lambda first, last: fill(0, 1, first, last))
        return np.ascontiguousarray(out.transpose(1, 2, 3, 0))

    def largest(self, shape: tuple[int, ...]) -> int:
        if self.taps is not None:
            return math.prod(self._output_size(*shape[:2])) * (len(self.taps) // (self.size[0] * self.size[1]))
        return (shape[0] + 1) * (shape[1] + 1) * max(self.product.inputs, self.product.outputs)  # patches or phases


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
        if len(x) > 1:  # digits: the batch whole, as its row blocks need
            norm = np.sqrt(np.square(x) @ self.gamma + self.beta)
            return x * norm if self.inverse else x / norm
        # One large image: in bands of pixels.
        pixels = x.reshape(-1, x.shape[-1])
        out = np.empty_like(pixels)

        def run(first: int, last: int) -> None:
            part = pixels[first:last]
            norm = np.square(part) @ self.gamma
            norm += self.beta
            np.sqrt(norm, out=norm)
            (np.multiply if self.inverse else np.divide)(part, norm, out=out[first:last])

        _in_bands(len(pixels), pixels.shape[1], run)
        return out.reshape(x.shape)

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
    same = spec.padding == model_pb2.PADDING_SAME
    builder = _Conv.build if kind == "conv2d" else _ConvTranspose.build
    return builder(kernel, bias, spec.stride, same, activation)


class NumpyNetwork:
    """A validated model half, ready to run on float32 batches with numpy (see the module docstring).

    `hyper`: an any-size encoder's hyper-analysis (y -> z) instead of the encoder itself.
    """

    device = "cpu"

    def __init__(self, info: NetworkInfo, hyper: bool = False) -> None:
        self.info = info
        self.input_shape = info.output_shape if hyper else info.input_shape
        layers = info.network.hyper_analysis if hyper else info.network.layers
        self.layers = tuple(_layer(layer, index) for index, layer in enumerate(layers))
        self._largest: dict[tuple[int, ...], int] = {}

    def __call__(self, batch: np.ndarray, finish: Callable[[Array], Array] | None = None) -> np.ndarray:
        """Runs a float32 batch of shape (n, *input_shape) through the network.

        `finish`: applied to the outputs a slice of the batch at a time, on the thread that computed them and
        while they are in its cache (the receiver's rounding to 8-bit pixels).
        """
        batch = as_batch(batch, self.input_shape)
        if self.info.any_size:  # one image of its own size per call: nothing to share a matrix with
            return self._forward(batch) if finish is None else finish(self._forward(batch))
        count = len(batch)
        padded = -(-count // _ROW_BLOCK) * _ROW_BLOCK
        if padded != count:
            batch = np.concatenate([batch, np.zeros((padded - count, *batch.shape[1:]), np.float32)])
        step = max(1, _SLICE_ELEMENTS // (_ROW_BLOCK * self._largest_per_image(batch.shape[1:]))) * _ROW_BLOCK
        blocks, parts = padded // _ROW_BLOCK, min(_threads, padded // _ROW_BLOCK)
        bounds = [_ROW_BLOCK * (blocks * i // parts) for i in range(parts + 1)]  # whole row blocks per part
        slices = [batch[bounds[i] : bounds[i + 1]] for i in range(parts)]
        return np.concatenate(_run_all(lambda part: self._sliced(part, step, finish), slices))[:count]

    def warm_up(self) -> None:
        """Runs one image of zeros, once, so that the first real batch finds the slice size and every layer's
        layouts built (a digit decoder's first batch of 512 took 1.5x the time of the next). Any-size networks:
        nothing, their layouts depend on each image's size."""
        if not self.info.any_size and self.input_shape not in self._largest:
            self(np.zeros((1, *self.input_shape), np.float32))

    def _sliced(self, batch: Array, step: int, finish: Callable[[Array], Array] | None = None) -> Array:
        """Runs whole row blocks, `step` rows at a time, each slice's outputs finished."""
        finish = finish or (lambda out: out)
        if len(batch) <= step:
            return finish(self._forward(batch))
        return np.concatenate([finish(self._forward(batch[i : i + step])) for i in range(0, len(batch), step)])

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
