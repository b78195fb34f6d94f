"""Converts latent arrays to and from `LatentBatch` messages (the only place that does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.proto import latentlink_pb2 as pb

__all__ = ["ImageHeader", "LatentCodecError", "SUPPORTED_ENCODINGS", "latents_to_batch", "latents_from_batch"]

SUPPORTED_ENCODINGS = (pb.LATENT_ENCODING_FLOAT64,)


class LatentCodecError(ValueError):
    """A latent batch is inconsistent with itself or with the decoder."""


@dataclass(frozen=True)
class ImageHeader:
    """What travels with each latent vector: sequence number, relative name, image shape."""

    seq: int
    name: str
    shape: tuple[int, ...]


def latents_to_batch(decoder_digest: str, headers: Sequence[ImageHeader], latents: np.ndarray) -> pb.LatentBatch:
    """Packs an (n, latent_dim) array as portable little-endian doubles."""
    latents = np.asarray(latents)
    if latents.ndim != 2 or latents.shape[0] != len(headers):
        raise LatentCodecError(f"latents of shape {latents.shape} for {len(headers)} images")
    return pb.LatentBatch(
        decoder_digest=decoder_digest,
        encoding=pb.LATENT_ENCODING_FLOAT64,
        latent_dim=latents.shape[1],
        images=[pb.ImageLatent(seq=h.seq, name=h.name, shape=h.shape) for h in headers],
        values=latents.astype(np.float64).ravel(),
    )


def latents_from_batch(batch: pb.LatentBatch, latent_dim: int) -> tuple[list[ImageHeader], np.ndarray]:
    """Unpacks a batch into headers and an (n, latent_dim) float64 array, checking sizes."""
    if batch.encoding != pb.LATENT_ENCODING_FLOAT64:
        raise LatentCodecError(f"latent encoding {batch.encoding} was not negotiated")
    if batch.latent_dim != latent_dim:
        raise LatentCodecError(f"batch latent width {batch.latent_dim}, decoder expects {latent_dim}")
    n = len(batch.images)
    if len(batch.values) != n * latent_dim:
        raise LatentCodecError(f"{len(batch.values)} values for {n} images of width {latent_dim}")
    values = np.asarray(batch.values, dtype=np.float64).reshape(n, latent_dim)
    headers = [ImageHeader(seq=i.seq, name=i.name, shape=tuple(i.shape)) for i in batch.images]
    return headers, values
