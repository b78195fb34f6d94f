"""Image quality as users see it: errors of 8-bit images, peak 1.0."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Quality", "quality", "squared_errors", "to_uint8"]


@dataclass(frozen=True)
class Quality:
    """Mean squared error, its root, and PSNR (dB) over a set of images."""

    mse: float
    rmse: float
    psnr: float

    @classmethod
    def from_mse(cls, mse: float) -> Quality:
        """Derives RMSE and PSNR (peak 1.0) from a mean squared error."""
        return cls(mse=mse, rmse=math.sqrt(mse), psnr=math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse))

    def __str__(self) -> str:
        return f"MSE {self.mse:.5f}, RMSE {self.rmse:.4f}, PSNR {self.psnr:.2f} dB"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Rounds [0, 1] floats to 8-bit grey levels, as written to PNG: 255 x, exactly, to the nearest (ties to even)."""
    if images.dtype != np.float32:
        scaled = np.multiply(images, 255.0, dtype=np.float64)
        np.rint(scaled, out=scaled)
        return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    # In float32 (a decoder's output): 255 x rounded to a float32 rounds to the integer the exact product does,
    # except where it lands on a half that the exact product may miss; those few are redone in float64.
    scaled = np.multiply(images, np.float32(255.0))
    np.clip(scaled, 0, 255, out=scaled)
    rounded = np.rint(scaled)
    scaled -= rounded
    ties = np.flatnonzero(np.abs(scaled, out=scaled) == 0.5)
    if ties.size:
        rounded.reshape(-1)[ties] = np.rint(images.reshape(-1)[ties].astype(np.float64) * 255.0)
    return rounded.astype(np.uint8)


def quality(original: np.ndarray, reconstructed: np.ndarray) -> Quality:
    """Compares two uint8 image stacks in [0, 1] units; PSNR is of the mean MSE."""
    if original.shape != reconstructed.shape:
        raise ValueError(f"shape mismatch: {original.shape} vs {reconstructed.shape}")
    return Quality.from_mse(float(squared_errors(original, reconstructed).sum()) / original.size)


def squared_errors(original: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """Each image's summed squared error, in [0, 1] units, of two uint8 stacks (n, ...) of one shape.

    Summed as integers (int16 differences, int32 squares), exactly: a batch of 4,096 digits takes 19 MB of
    temporaries, where float64 took five of 26 MB (each first touch of fresh memory a page fault).
    """
    diff = np.subtract(original, reconstructed, dtype=np.int16)
    diff = diff.reshape(len(diff), math.prod(diff.shape[1:]))  # (n, pixels), an empty stack too
    return np.square(diff, dtype=np.int32).sum(axis=1, dtype=np.int64) / 255.0**2
