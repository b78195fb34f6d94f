"""Entropy-codes latent vectors with an autoregressive context prior (see ContextPrior in model.proto).

Latent d of each image is coded with a table chosen from latents 0..d-1 by an
integer network, computed exactly (see integer_network.py): both ends choose
the same table for every symbol on any machine. A batch becomes one ANS
stream: latent 0 of every image, then latent 1, and so on; the receiver
decodes them in that order, running the network once per latent.
"""

from __future__ import annotations

import constriction
import numpy as np

from latentlink.shared.entropy_coding import BitstreamError, EntropyTables, ans_coder
from latentlink.shared.integer_network import IntegerNetwork
from latentlink.shared.proto import model_pb2

__all__ = ["ContextTables"]


class ContextTables:
    """The coding machinery of a decoder with a context prior; used where EntropyTables serves a factorised one."""

    def __init__(self, network: model_pb2.Network) -> None:
        prior = network.context_prior
        self.latent = network.input_shape[0]
        self.fraction_bits, self.mean_bins = prior.fraction_bits, prior.mean_bins
        self.network = IntegerNetwork.from_proto(prior)
        self.tables = EntropyTables.from_proto(prior.tables)
        self.levels = len(self.network.thresholds) + 1

    def choose(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For (n, latent) integer latents: each one's integer mean, and the table row it is coded with.

        Column d depends only on columns before d, so decoding can fill the latents in one column at a time.
        """
        out = self.network.outputs(np.asarray(latents, np.float64)[:, None, :])[:, 0, :].astype(np.int64)
        means, log_scales = out[:, : self.latent], out[:, self.latent :]
        steps = means >> (self.fraction_bits - self.mean_bins.bit_length() + 1)  # the mean in 1/bins steps
        whole, part = steps // self.mean_bins, steps % self.mean_bins
        level = np.searchsorted(self.network.thresholds, log_scales, side="right")
        return whole, part * self.levels + level

    def bits(self, latents: np.ndarray) -> np.ndarray:
        """Ideal code length in bits of each row of (n, latent) integer latents (escapes included)."""
        latents = np.asarray(latents, np.float64)
        whole, rows = self.choose(latents)
        return self.tables.code_length(latents - whole, rows).sum(axis=1)

    def encode(self, latents: np.ndarray) -> bytes:
        """Codes an (n, latent) array of integer-valued latents into one bitstream."""
        latents = np.asarray(latents, np.float64)
        whole, rows = self.choose(latents)
        coder = constriction.stream.stack.AnsCoder()
        for d in reversed(range(self.latent)):  # popped first to last
            self.tables.push(coder, latents[:, d] - whole[:, d], rows[:, d])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decodes `count` latent vectors; raises BitstreamError if the stream does not fit."""
        coder = ans_coder(data)
        latents = np.zeros((count, self.latent))
        try:
            for d in range(self.latent):
                whole, rows = self.choose(latents)  # columns d.. are still zero: column d does not see them
                latents[:, d] = self.tables.pop(coder, rows[:, d]) + whole[:, d]
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise BitstreamError(f"corrupt bitstream: {exc}") from None
        if not coder.is_empty():
            raise BitstreamError("corrupt bitstream: data left over after the announced latents")
        return latents
