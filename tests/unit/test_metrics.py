"""8-bit rounding: the pixels a receiver writes are 255 x rounded exactly, whatever float type computed x."""

import numpy as np

from latentlink.shared.metrics import to_uint8


def _exact(images: np.ndarray) -> np.ndarray:
    """The definition: 255 x in float64 (exact for float32 x), to the nearest integer, ties to even, in 0..255."""
    return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _near_every_half() -> np.ndarray:
    """Every float32 within 4,096 steps of (k + 0.5) / 255 for k = 0..255: where 255 x rounded to float32 can land
    on a half that the exact product is not."""
    centres = (np.arange(256) + 0.5) / 255.0
    bits = centres.astype(np.float32).view(np.uint32)[:, None] + np.arange(-4096, 4097, dtype=np.int64)
    return bits.astype(np.uint32).view(np.float32).ravel()


def test_float32_pixels_round_as_the_exact_product_does():
    x = _near_every_half()
    naive = np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)
    assert np.count_nonzero(naive != _exact(x)) > 0  # rounding in float32 alone gets some of these wrong
    assert np.array_equal(to_uint8(x), _exact(x))
    stack = x[: 64 * 784].reshape(64, 28, 28)
    assert np.array_equal(to_uint8(stack), _exact(stack)) and to_uint8(stack).shape == (64, 28, 28)


def test_values_outside_the_unit_range_and_other_float_types_clip():
    odd = np.array([-np.inf, -1e30, -0.5, -0.001, 0.0, 1.0, 1.001, 3.0, 1e30, np.inf], np.float32)
    assert to_uint8(odd).tolist() == [0, 0, 0, 0, 0, 255, 255, 255, 255, 255]
    x64 = np.linspace(-0.1, 1.1, 10_001)
    assert np.array_equal(to_uint8(x64), _exact(x64))
    rows = _near_every_half()[: 3 * 4096].reshape(3, -1)[:, ::2]  # not contiguous
    assert np.array_equal(to_uint8(rows), _exact(rows))
