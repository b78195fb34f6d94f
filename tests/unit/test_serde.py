"""Latent batches: every encoding decodes to what the sender predicts; bad batches are refused."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.serde import LatentCodecError, latents_from_batch, latents_to_batch, pack_names, wire_latents
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


def test_image_keys_follow_the_published_definition():
    """BLAKE2b-64 of name, 0, decoder digest, 0, float64 latents: a client in any language gets the same."""
    import hashlib

    from latentlink.shared.serde import image_keys

    latents = np.array([[1.0, -0.0, 2.5], [0.0, 0.0, 0.0]])
    keys = image_keys(DIGEST, ["a.png", "b/c.png"], latents)
    message = b"a.png\0" + DIGEST.encode() + b"\0" + np.array([1.0, 0.0, 2.5], "<f8").tobytes()
    assert keys[0] == hashlib.blake2b(message, digest_size=8).digest() and len(set(keys)) == 2
    assert keys[0].hex() == "34bce55b521552ed"  # golden: negative zero counts as zero


def test_acknowledgements_carry_a_checksum_that_catches_corruption():
    from latentlink.shared.serde import BatchOutcome, ProtocolError, outcome_from_proto, outcome_to_proto

    outcome = BatchOutcome(1000, 4, {1001: "write failed: disk full"}, resend=False)
    message = outcome_to_proto(outcome).acks
    assert outcome_from_proto(pb.AckBatch.FromString(message.SerializeToString())) == outcome
    for tamper in ("first_seq", "count"):
        bad = pb.AckBatch.FromString(message.SerializeToString())
        setattr(bad, tamper, getattr(bad, tamper) + 1)
        with pytest.raises(ProtocolError, match="fails its checksum"):
            outcome_from_proto(bad)
    bad = pb.AckBatch.FromString(message.SerializeToString())
    bad.failures[0].seq = 1002
    with pytest.raises(ProtocolError, match="fails its checksum"):
        outcome_from_proto(bad)


def test_durable_keys_travel_in_messages_under_the_size_limit():
    from latentlink.shared.serde import KEY_BYTES, KEYS_PER_MESSAGE, durable_messages, keys_from_durable

    keys = [i.to_bytes(KEY_BYTES, "little") for i in range(KEYS_PER_MESSAGE + 5)]
    messages = list(durable_messages(b"".join(keys)))
    assert len(messages) == 2 and all(m.ByteSize() < 1 << 20 for m in messages)
    assert set().union(*(keys_from_durable(m.durable) for m in messages)) == set(keys)


def test_a_garbled_message_is_data_loss_not_a_crash():
    from latentlink.shared.serde import ProtocolError, parse_sender_message

    with pytest.raises(ProtocolError) as caught:
        parse_sender_message(b"\xff\xff\xff\xff")
    assert caught.value.status == "DATA_LOSS"


@pytest.mark.parametrize(
    ("names", "pattern"),
    [
        ([f"mnist/x_test_{i:04d}.png" for i in range(5, 517)], True),
        ([f"img{i}.png" for i in range(8, 13)], True),  # 8, 9, 10, 11, 12: unpadded numbers
        ([f"50%_{i:03d}%d{{}}.png" for i in range(7, 12)], True),  # format characters around the number
        (["a.png", "b.png"], False),
        (["img1.png", "img3.png"], False),
        (["x_test_0009.png", "x_test_10.png"], False),
        (["only.png"], False),
    ],
)
def test_numbered_names_travel_as_a_pattern_and_come_back_the_same(names, pattern):
    fields = pack_names(names)
    assert ("name_pattern" in fields) == pattern
    batch = latents_to_batch("a" * 64, pb.LATENT_ENCODING_FLOAT64, 0, names, (28, 28), np.zeros((len(names), 4)))
    assert latents_from_batch(batch, 4).names == names
    if pattern:
        assert batch.ByteSize() < 8 * 4 * len(names) + 200  # the names cost almost nothing


def test_a_hostile_name_pattern_is_refused():
    batch = latents_to_batch("a" * 64, pb.LATENT_ENCODING_FLOAT64, 0, ["a1", "a2"], (28, 28), np.zeros((2, 4)))
    batch.name_pattern.width = 10**6
    with pytest.raises(LatentCodecError, match="name pattern"):
        latents_from_batch(batch, 4)


@pytest.mark.parametrize(
    "data",
    [
        b"",  # parses, but no kind: a receiver always sends one
        b"\xf8\x07\x01",  # a flipped tag byte: the kind became an unknown field (seen in CI, test_faults)
        b"\x0a\x05\x01",  # truncated: does not parse at all
    ],
)
def test_a_receiver_message_without_a_known_kind_is_corruption_in_transit(data):
    from latentlink.shared.serde import ProtocolError, parse_receiver_message

    with pytest.raises(ProtocolError, match="corrupt in transit") as caught:
        parse_receiver_message(data)
    assert caught.value.status == "DATA_LOSS"


def test_the_handshake_names_the_receiver_and_round_trips():
    from latentlink.receiver.servicer import LIMITS
    from latentlink.shared.serde import SessionTerms, handshake_from_proto, handshake_to_proto

    terms = SessionTerms(2, True, pb.LATENT_ENCODING_ANS, LIMITS, "run", 0, 3, 0, receiver="receiver-2:50051")
    assert handshake_to_proto(terms).handshake.receiver == "receiver-2:50051"
    assert handshake_from_proto(handshake_to_proto(terms).handshake) == terms


def test_a_digit_batchs_vectors_are_one_array_with_the_keys_of_its_rows():
    """The receiver hashes a digit batch's rows as one array (one float64 conversion, not one per row)."""
    from latentlink.shared.serde import DecodedBatch, image_keys

    latents = np.arange(12, dtype=np.float64).reshape(4, 3) - 5.0
    batch = DecodedBatch(7, ["a", "b", "c", "d"], (28, 28), latents)
    vectors = batch.vectors([0, 2, 3])
    assert isinstance(vectors, np.ndarray) and vectors.shape == (3, 3)
    names = ["a", "c", "d"]
    assert image_keys(DIGEST, names, vectors) == image_keys(DIGEST, names, [latents[0], latents[2], latents[3]])


def test_images_per_batch_grow_to_4096_only_while_a_batch_stays_within_its_pixels():
    from latentlink.shared.protocol import batch_images_limit

    assert batch_images_limit((28, 28)) == batch_images_limit((28, 28, 1)) == batch_images_limit((32, 32, 3)) == 4096
    assert batch_images_limit((33, 33)) == (1 << 22) // (33 * 33)  # 3,851: 4 M pixels
    assert batch_images_limit((64, 64, 3)) == batch_images_limit((1000, 1000)) == 1024  # as before: never fewer
    assert batch_images_limit((0, 0, 3)) == 4096  # images of any size: bounded by their pixels instead
