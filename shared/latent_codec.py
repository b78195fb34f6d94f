"""Converts latent arrays to and from `LatentBatch` messages (the only place that does)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentlink.shared.entropy_coding import BitstreamError, EntropyTables
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import MAX_BATCH_IMAGES, MAX_NAME_BYTES

__all__ = [
    "ENCODING_NAMES",
    "DecodedBatch",
    "LatentCodecError",
    "latents_from_batch",
    "latents_to_batch",
    "supported_encodings",
    "wire_latents",
]

ENCODING_NAMES = {
    "float64": pb.LATENT_ENCODING_FLOAT64,
    "float32": pb.LATENT_ENCODING_FLOAT32,
    "float16": pb.LATENT_ENCODING_FLOAT16,
    "ans": pb.LATENT_ENCODING_ANS,
}
_RAW_DTYPES = {pb.LATENT_ENCODING_FLOAT32: np.dtype("<f4"), pb.LATENT_ENCODING_FLOAT16: np.dtype("<f2")}


class LatentCodecError(ValueError):
    """A latent batch is inconsistent with itself or with the decoder."""


@dataclass(frozen=True)
class DecodedBatch:
    """A batch as the receiver sees it: sequence numbers, names, image shape and float64 latents."""

    first_seq: int
    names: list[str]
    image_shape: tuple[int, ...]
    latents: np.ndarray


def supported_encodings(tables: EntropyTables | None) -> list[int]:
    """Encodings a model allows, most compact first; float16 is lossy and only used when asked for."""
    exact = [pb.LATENT_ENCODING_FLOAT32, pb.LATENT_ENCODING_FLOAT64]
    return ([pb.LATENT_ENCODING_ANS] if tables is not None else []) + exact


def wire_latents(encoding: int, latents: np.ndarray) -> np.ndarray:
    """Returns the float64 latents the receiver will decode from `latents` sent with `encoding`."""
    latents = np.asarray(latents)
    if encoding == pb.LATENT_ENCODING_FLOAT16:
        return latents.astype(np.float16).astype(np.float64)
    return latents.astype(np.float64)


def latents_to_batch(
    decoder_digest: str,
    encoding: int,
    first_seq: int,
    names: Sequence[str],
    image_shape: Sequence[int],
    latents: np.ndarray,
    tables: EntropyTables | None = None,
) -> pb.LatentBatch:
    """Packs an (n, latent_dim) array and its images' names into one message."""
    latents = np.asarray(latents)
    if latents.ndim != 2 or latents.shape[0] != len(names):
        raise LatentCodecError(f"latents of shape {latents.shape} for {len(names)} images")
    batch = pb.LatentBatch(
        decoder_digest=decoder_digest,
        encoding=encoding,
        latent_dim=latents.shape[1],
        first_seq=first_seq,
        count=len(names),
        image_shape=image_shape,
        names=zlib.compress("\0".join(names).encode(), 9),
        checksum=_checksum(wire_latents(encoding, latents)),
    )
    if encoding == pb.LATENT_ENCODING_FLOAT64:
        batch.values.extend(latents.astype(np.float64).ravel())
    elif encoding in _RAW_DTYPES:
        batch.payload = latents.astype(_RAW_DTYPES[encoding]).tobytes()
    elif encoding == pb.LATENT_ENCODING_ANS and tables is not None:
        batch.payload = tables.encode(latents)
    else:
        raise LatentCodecError(f"cannot produce latent encoding {encoding}")
    return batch


def latents_from_batch(batch: pb.LatentBatch, latent_dim: int, tables: EntropyTables | None = None) -> DecodedBatch:
    """Unpacks and checks a batch; raises LatentCodecError (bitstream faults included)."""
    n = batch.count
    if not 0 < n <= MAX_BATCH_IMAGES:
        raise LatentCodecError(f"batch of {n} images (1..{MAX_BATCH_IMAGES} allowed)")
    if batch.latent_dim != latent_dim:
        raise LatentCodecError(f"batch latent width {batch.latent_dim}, decoder expects {latent_dim}")
    names = _names(batch.names, n)
    latents = _latents(batch, n, latent_dim, tables)
    if _checksum(latents) != batch.checksum:
        raise LatentCodecError("latents fail their checksum: corrupt payload")
    return DecodedBatch(batch.first_seq, names, tuple(batch.image_shape), latents)


def _latents(batch: pb.LatentBatch, n: int, latent_dim: int, tables: EntropyTables | None) -> np.ndarray:
    encoding = batch.encoding
    if encoding == pb.LATENT_ENCODING_FLOAT64:
        if len(batch.values) != n * latent_dim:
            raise LatentCodecError(f"{len(batch.values)} values for {n} images of width {latent_dim}")
        return np.asarray(batch.values, dtype=np.float64).reshape(n, latent_dim)
    if encoding in _RAW_DTYPES:
        dtype = _RAW_DTYPES[encoding]
        if len(batch.payload) != n * latent_dim * dtype.itemsize:
            raise LatentCodecError(f"{len(batch.payload)} payload bytes for {n} images of width {latent_dim}")
        return np.frombuffer(batch.payload, dtype=dtype).astype(np.float64).reshape(n, latent_dim)
    if encoding == pb.LATENT_ENCODING_ANS and tables is not None:
        try:
            return tables.decode(batch.payload, n)
        except BitstreamError as exc:
            raise LatentCodecError(str(exc)) from None
    raise LatentCodecError(f"latent encoding {encoding} was not negotiated for this decoder")


def _names(data: bytes, n: int) -> list[str]:
    limit = n * (MAX_NAME_BYTES + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise LatentCodecError(f"image names do not decompress: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise LatentCodecError("image names are truncated or larger than allowed")
    try:
        names = raw.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        raise LatentCodecError("image names are not UTF-8") from None
    if len(names) != n:
        raise LatentCodecError(f"{len(names)} names for {n} images")
    return names


def _checksum(latents: np.ndarray) -> int:
    # Adding 0.0 turns -0.0 into 0.0: a rounded -0.3 and a decoded integer 0 are the same latent.
    return zlib.crc32((np.ascontiguousarray(latents, dtype="<f8") + 0.0).tobytes())
