"""Sender-side search (`--effort`): rate-distortion-optimised rounding of latent vectors under the fixed decoder.

The encoder's continuous latents are rounded to the nearest integers; the
decoder and the prior are fixed, so the sender may pick any integers it likes.
Each pass visits the latents one at a time and moves it to the other integer
next to the encoder's value (or one step further towards zero) when that
lowers MSE + beta x bits for the image, with beta the weight the model was
trained with: the receiver decodes whatever is sent, at no cost to it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EFFORTS", "refine"]

EFFORTS = (0, 1, 2)  # passes over the latents


def refine(decode, tables, images: np.ndarray, continuous: np.ndarray, beta: float, passes: int) -> np.ndarray:
    """Integer latents for (n, ...) uint8 images, chosen by `passes` rounds of coordinate search.

    `decode` maps (n, latent) float32 latents to [0, 1] images; `tables`
    gives each row's exact code length in bits (`bits`).
    """
    current = np.round(continuous)
    if passes <= 0:
        return current + 0.0
    target = images.astype(np.float32) / 255.0
    axes = tuple(range(1, target.ndim))

    def cost(latents: np.ndarray) -> np.ndarray:
        error = np.mean((decode(latents.astype(np.float32)) - target) ** 2, axis=axes)
        return error + beta * tables.bits(latents)

    best = cost(current)
    for _ in range(passes):
        for d in range(current.shape[1]):
            for candidate in _neighbours(current[:, d], continuous[:, d]):
                trial = current.copy()
                trial[:, d] = candidate
                trial_cost = cost(trial)
                better = trial_cost < best
                current[better, d] = candidate[better]
                best = np.where(better, trial_cost, best)
    return current + 0.0  # -0.0 to 0.0: what the receiver decodes


def _neighbours(values: np.ndarray, continuous: np.ndarray) -> list[np.ndarray]:
    """Integers worth trying for one latent: the other side of the encoder's value, and one step towards zero."""
    other = np.where(values > continuous, np.floor(continuous), np.ceil(continuous))
    other = np.where(other == values, values + np.sign(continuous - values + 1e-9), other)
    return [other, values - np.sign(values)]
