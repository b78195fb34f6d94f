"""Latent batches: every encoding decodes to what the sender predicts; bad batches are refused."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.serde import LatentCodecError, latents_from_batch, latents_to_batch, wire_latents
from latentlink.train.factorized_prior import _quantize

DIGEST = "ab" * 32
NAMES = [f"digits/test_{i:05d}.png" for i in range(5)]


def _tables(channels: int = 8) -> EntropyTables:
    row = _quantize(np.append(np.exp(-np.abs(np.arange(-4, 5)) / 1.5), 1e-4), 16)
    pmfs = np.tile(row, (channels, 1)).astype(np.int32)
    return EntropyTables(np.full(channels, -4, np.int32), np.full(channels, len(row), np.int32), pmfs, 16)


def _round_trip(encoding: int, latents: np.ndarray, tables=None):
    batch = latents_to_batch(DIGEST, encoding, 7, NAMES, (28, 28), latents, tables)
    return latents_from_batch(pb.LatentBatch.FromString(batch.SerializeToString()), latents.shape[1], tables)


@pytest.mark.parametrize("encoding", [pb.LATENT_ENCODING_FLOAT64, pb.LATENT_ENCODING_FLOAT32])
def test_exact_encodings_carry_float32_latents_exactly(encoding):
    latents = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    decoded = _round_trip(encoding, latents)
    assert decoded.names == NAMES and decoded.first_seq == 7 and decoded.image_shape == (28, 28)
    np.testing.assert_array_equal(decoded.latents, latents.astype(np.float64))


def test_float16_is_lossy_but_exactly_what_the_sender_predicts():
    latents = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    decoded = _round_trip(pb.LATENT_ENCODING_FLOAT16, latents)
    np.testing.assert_array_equal(decoded.latents, wire_latents(pb.LATENT_ENCODING_FLOAT16, latents))
    assert not np.array_equal(decoded.latents, latents.astype(np.float64))


def test_entropy_coded_integers_round_trip_exactly_including_escapes():
    latents = np.round(np.random.default_rng(2).laplace(0, 1.5, size=(5, 8)))
    latents[0, 0], latents[4, 7] = 1e6, -(2**31) + 1  # far outside the table: escape path
    decoded = _round_trip(pb.LATENT_ENCODING_ANS, latents, _tables())
    np.testing.assert_array_equal(decoded.latents, latents)


def test_doubles_are_little_endian_ieee754_on_the_wire():
    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_FLOAT64, 0, ["a.png"], (28, 28), np.array([[1.5]]))
    assert np.float64(1.5).astype("<f8").tobytes() in batch.SerializeToString()


def test_corrupt_bitstream_is_an_error_not_garbage():
    latents = np.round(np.random.default_rng(3).laplace(0, 1.5, size=(5, 8)))
    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_ANS, 0, NAMES, (28, 28), latents, _tables())
    payload = bytearray(batch.payload)
    payload[len(payload) // 2] ^= 0x55
    batch.payload = bytes(payload)
    with pytest.raises(LatentCodecError, match="corrupt|checksum"):
        latents_from_batch(batch, 8, _tables())


def test_value_count_must_match_images_times_width():
    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_FLOAT64, 0, NAMES[:2], (28, 28), np.zeros((2, 8)))
    del batch.values[-1]
    with pytest.raises(LatentCodecError, match="15 values for 2 images of width 8"):
        latents_from_batch(batch, 8)


def test_width_must_match_the_decoder():
    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_FLOAT32, 0, NAMES[:1], (28, 28), np.zeros((1, 8)))
    with pytest.raises(LatentCodecError, match="decoder expects 16"):
        latents_from_batch(batch, 16)


def test_names_that_inflate_past_the_limit_are_refused():
    import zlib

    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_FLOAT32, 0, NAMES[:1], (28, 28), np.zeros((1, 8)))
    batch.names = zlib.compress(b"x" * 10_000_000)  # a zip bomb of one name
    with pytest.raises(LatentCodecError, match="names"):
        latents_from_batch(batch, 8)


def test_ans_is_refused_without_tables():
    batch = latents_to_batch(DIGEST, pb.LATENT_ENCODING_ANS, 0, NAMES, (28, 28), np.zeros((5, 8)), _tables())
    with pytest.raises(LatentCodecError, match="not negotiated"):
        latents_from_batch(batch, 8, None)
