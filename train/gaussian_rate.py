"""The training-time code length of a latent under a Gaussian prior: one home for the photo and digit priors."""

from __future__ import annotations

import math

__all__ = ["gaussian_bits"]


def gaussian_bits(residual, scale):
    """Bits of each element of `residual` (a latent less its predicted mean) under a zero-mean Gaussian of
    `scale` convolved with a unit-width uniform: the probability of its rounding bin, as the tables code it."""
    from keras import ops

    values = ops.abs(residual)
    upper = 0.5 * ops.erfc(-(0.5 - values) / (scale * math.sqrt(2.0)))
    lower = 0.5 * ops.erfc(-(-0.5 - values) / (scale * math.sqrt(2.0)))
    return -ops.log(ops.maximum(upper - lower, 1e-9)) / math.log(2.0)
