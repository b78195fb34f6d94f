"""Latent batches carry float32 latents exactly as doubles and reject inconsistent sizes."""

from __future__ import annotations

import numpy as np
import pytest

from shared.latent_codec import ImageHeader, LatentCodecError, latents_from_batch, latents_to_batch
from shared.proto import latentlink_pb2 as pb


def _headers(n: int) -> list[ImageHeader]:
    return [ImageHeader(seq=i, name=f"{i}.png", shape=(28, 28)) for i in range(n)]


def test_latents_survive_serialisation_exactly():
    latents = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    wire = latents_to_batch("ab" * 32, _headers(5), latents).SerializeToString()
    headers, values = latents_from_batch(pb.LatentBatch.FromString(wire), 64)
    assert headers == _headers(5)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values.astype(np.float32), latents)


def test_doubles_are_little_endian_ieee754_on_the_wire():
    batch = latents_to_batch("ab" * 32, _headers(1), np.array([[1.5]]))
    wire = batch.SerializeToString()
    assert np.float64(1.5).astype("<f8").tobytes() in wire


def test_value_count_must_match_images_times_width():
    batch = latents_to_batch("ab" * 32, _headers(2), np.zeros((2, 8)))
    del batch.values[-1]
    with pytest.raises(LatentCodecError, match="15 values for 2 images of width 8"):
        latents_from_batch(batch, 8)


def test_width_must_match_the_decoder():
    batch = latents_to_batch("ab" * 32, _headers(1), np.zeros((1, 8)))
    with pytest.raises(LatentCodecError, match="decoder expects 16"):
        latents_from_batch(batch, 16)
