"""Entropy-codes integer latents with constriction's ANS coder and a model's integer tables.

A whole batch becomes one bitstream. Per latent dimension d, the n values of
that dimension are coded with the categorical distribution in row d of the
tables; a value outside the row's range is coded as the row's escape symbol
followed, after all symbols, by its raw 32-bit zigzag code as two uniform
16-bit symbols. Both ends build constriction's models from the same integers
(shipped in the decoder file), so the decoded values are exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from latentlink.shared.model_format import tensor_from_array, tensor_to_array
from latentlink.shared.proto import model_pb2

__all__ = ["BitstreamError", "EntropyTables"]

_RAW_LIMIT = 1 << 31
_UNIFORM16 = constriction.stream.model.Uniform(1 << 16)


class BitstreamError(ValueError):
    """A bitstream does not decode to the announced number of latents."""


@dataclass(frozen=True, eq=False)
class EntropyTables:
    """Integer frequency tables, one row per latent dimension (see EntropyModel in model.proto)."""

    offsets: np.ndarray  # int32 [C]
    lengths: np.ndarray  # int32 [C]
    pmfs: np.ndarray  # int32 [C, W]
    precision: int

    @classmethod
    def from_network(cls, network: model_pb2.Network) -> EntropyTables | None:
        """Reads the tables of a validated decoder network, or None when it has none."""
        if not network.HasField("entropy_model"):
            return None
        table = network.entropy_model
        return cls(
            tensor_to_array(table.offsets), tensor_to_array(table.lengths), tensor_to_array(table.pmfs), table.precision
        )

    def to_proto(self) -> model_pb2.EntropyModel:
        return model_pb2.EntropyModel(
            precision=self.precision,
            offsets=tensor_from_array(self.offsets.astype(np.int32)),
            lengths=tensor_from_array(self.lengths.astype(np.int32)),
            pmfs=tensor_from_array(self.pmfs.astype(np.int32)),
        )

    @functools.cached_property
    def _models(self) -> list:
        scale = float(1 << self.precision)
        return [
            constriction.stream.model.Categorical(row[:length].astype(np.float64) / scale, perfect=False)
            for row, length in zip(self.pmfs, self.lengths, strict=True)
        ]

    def bits(self, latents: np.ndarray) -> np.ndarray:
        """Ideal code length in bits of each row of integer latents (escapes included)."""
        symbols, escaped = self._symbols(latents)
        rows = np.arange(latents.shape[1])[None, :]
        freq = self.pmfs[rows, symbols].astype(np.float64)
        return (self.precision - np.log2(freq)).sum(axis=1) + 32 * escaped.sum(axis=1)

    def _symbols(self, latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(latents, np.float64)
        finite = np.all(np.isfinite(values))
        if not finite or np.any(np.abs(values) >= _RAW_LIMIT) or np.any(values != np.round(values)):
            raise ValueError("latents to entropy-code must be finite integers below 2^31 in magnitude")
        symbols = values.astype(np.int64) - self.offsets[None, :]
        escape = (self.lengths - 1)[None, :]
        escaped = (symbols < 0) | (symbols >= escape)
        return np.where(escaped, escape, symbols), escaped

    def encode(self, latents: np.ndarray) -> bytes:
        """Codes an (n, C) array of integer-valued latents into one bitstream."""
        symbols, escaped = self._symbols(latents)
        raw = np.asarray(latents, np.float64).astype(np.int64).T[escaped.T]  # dimension-major, like decoding
        zigzag = np.where(raw >= 0, 2 * raw, -2 * raw - 1).astype(np.uint64)
        coder = constriction.stream.stack.AnsCoder()
        if len(zigzag):
            halves = np.stack([zigzag >> 16, zigzag & 0xFFFF], axis=1).ravel().astype(np.int32)
            coder.encode_reverse(halves, _UNIFORM16)
        for d in reversed(range(symbols.shape[1])):
            coder.encode_reverse(symbols[:, d].astype(np.int32), self._models[d])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decodes `count` latent vectors; raises BitstreamError if the stream does not fit."""
        if len(data) % 4:
            raise BitstreamError(f"bitstream of {len(data)} bytes is not whole 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        channels = len(self.offsets)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            symbols = np.stack([coder.decode(self._models[d], count) for d in range(channels)], axis=1)
            escaped = symbols == (self.lengths - 1)[None, :]
            values = symbols.astype(np.int64) + self.offsets[None, :]
            n_raw = int(escaped.sum())
            if n_raw:
                halves = coder.decode(_UNIFORM16, 2 * n_raw).astype(np.uint64).reshape(-1, 2)
                zigzag = ((halves[:, 0] << 16) | halves[:, 1]).astype(np.int64)
                raw = np.where(zigzag % 2 == 0, zigzag // 2, -((zigzag + 1) // 2))
                transposed = values.T.copy()
                transposed[escaped.T] = raw.astype(np.int64)
                values = transposed.T
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise BitstreamError(f"corrupt bitstream: {exc}") from None
        if not coder.is_empty():
            raise BitstreamError("corrupt bitstream: data left over after the announced latents")
        return values.astype(np.float64)
