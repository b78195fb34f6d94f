"""Entropy-codes integer latents with constriction's ANS coder and a model's integer tables.

Every value is coded with one row of the tables: for a latent vector, row d
codes dimension d; for a photo's latent tensor, the row its predicted scale
picks. Values are coded grouped by row (rows in increasing order, each row's
values in array order); a value outside its row's range is coded as the row's
escape symbol followed, after all symbols of the segment, by its raw 32-bit
zigzag code as two uniform 16-bit symbols. Both ends build constriction's
models from the same integers (shipped in the decoder file), so the decoded
values are exact. Several segments can share one stream (`push` and `pop`):
they are popped in the order opposite to pushing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from latentlink.shared.model_format import tensor_from_array, tensor_to_array
from latentlink.shared.proto import model_pb2

__all__ = ["BitstreamError", "EntropyTables", "ans_coder"]

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
        """Reads the tables of a validated vector decoder, or None when it has none."""
        return cls.from_proto(network.entropy_model) if network.HasField("entropy_model") else None

    @classmethod
    def from_proto(cls, table: model_pb2.EntropyModel) -> EntropyTables:
        """Reads validated tables."""
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
        """Ideal code length in bits of each row of an (n, C) array of integer latents (escapes included)."""
        return self.code_length(latents, np.broadcast_to(np.arange(latents.shape[1]), latents.shape)).sum(axis=1)

    def code_length(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Ideal code length in bits of each integer value coded with its row (an escape adds its 32 raw bits)."""
        symbols, escaped = self._symbols(values, rows)
        return self.symbol_bits[rows, symbols] + 32 * escaped

    @functools.cached_property
    def symbol_bits(self) -> np.ndarray:
        """Ideal code length in bits of every symbol of every row, [C, W] float64 (inf past a row's length)."""
        with np.errstate(divide="ignore"):
            return self.precision - np.log2(self.pmfs.astype(np.float64))

    def _symbols(self, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(values, np.float64)
        finite = np.all(np.isfinite(values))
        if not finite or np.any(np.abs(values) >= _RAW_LIMIT) or np.any(values != np.round(values)):
            raise ValueError("latents to entropy-code must be finite integers below 2^31 in magnitude")
        symbols = values.astype(np.int64) - self.offsets[rows]
        escape = self.lengths[rows] - 1
        escaped = (symbols < 0) | (symbols >= escape)
        return np.where(escaped, escape, symbols), escaped

    def push(self, coder, values: np.ndarray, rows: np.ndarray) -> None:
        """Pushes integer `values` (any shape), each coded with its row in `rows` (same shape), onto `coder`."""
        values, rows = np.ravel(values), np.ravel(rows).astype(np.int64)
        order = np.argsort(rows, kind="stable")
        symbols, escaped = self._symbols(values[order], rows[order])
        raw = np.asarray(values[order], np.float64).astype(np.int64)[escaped]
        zigzag = np.where(raw >= 0, 2 * raw, -2 * raw - 1).astype(np.uint64)
        if len(zigzag):
            halves = np.stack([zigzag >> 16, zigzag & 0xFFFF], axis=1).ravel().astype(np.int32)
            coder.encode_reverse(halves, _UNIFORM16)
        bounds = np.searchsorted(rows[order], np.arange(len(self.offsets) + 1))
        for row in reversed(range(len(self.offsets))):
            if bounds[row + 1] > bounds[row]:
                coder.encode_reverse(symbols[bounds[row] : bounds[row + 1]].astype(np.int32), self._models[row])

    def pop(self, coder, rows: np.ndarray) -> np.ndarray:
        """Pops the values `push` pushed for these `rows`; returns int64 values shaped like `rows`.

        Raises the coder's errors (ValueError, RuntimeError, AssertionError) on a corrupt stream.
        """
        shape, rows = np.shape(rows), np.ravel(rows).astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self.offsets)):
            raise ValueError("a row index is outside the tables")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        counts = np.bincount(sorted_rows, minlength=len(self.offsets))
        symbols = np.concatenate(
            [coder.decode(self._models[row], int(n)) for row, n in enumerate(counts) if n] or [np.zeros(0, np.int32)]
        ).astype(np.int64)
        values = symbols + self.offsets[sorted_rows]
        escaped = symbols == self.lengths[sorted_rows] - 1
        n_raw = int(escaped.sum())
        if n_raw:
            halves = coder.decode(_UNIFORM16, 2 * n_raw).astype(np.uint64).reshape(-1, 2)
            zigzag = ((halves[:, 0] << 16) | halves[:, 1]).astype(np.int64)
            values[escaped] = np.where(zigzag % 2 == 0, zigzag // 2, -((zigzag + 1) // 2))
        out = np.empty_like(values)
        out[order] = values
        return out.reshape(shape)

    def encode(self, latents: np.ndarray) -> bytes:
        """Codes an (n, C) array of integer-valued latents into one bitstream, row d coding dimension d."""
        coder = constriction.stream.stack.AnsCoder()
        self.push(coder, latents, np.broadcast_to(np.arange(latents.shape[1]), latents.shape))
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decodes `count` latent vectors; raises BitstreamError if the stream does not fit."""
        coder = ans_coder(data)
        rows = np.broadcast_to(np.arange(len(self.offsets)), (count, len(self.offsets)))
        try:
            values = self.pop(coder, rows)
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise BitstreamError(f"corrupt bitstream: {exc}") from None
        if not coder.is_empty():
            raise BitstreamError("corrupt bitstream: data left over after the announced latents")
        return values.astype(np.float64)


def ans_coder(data: bytes):
    """An ANS coder holding a bitstream of whole little-endian 32-bit words; raises BitstreamError otherwise."""
    if len(data) % 4:
        raise BitstreamError(f"bitstream of {len(data)} bytes is not whole 32-bit words")
    return constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
