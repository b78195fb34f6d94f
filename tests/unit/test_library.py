"""compress/decompress and the container: round trips, and every kind of bad data refused with a ValueError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from latentlink import ContainerError, UnknownDecoderError, compress, decompress
from latentlink.codec.container import MAGIC, unpack_container
from latentlink.codec.library import decompress_named
from latentlink.shared.image_io import find_sources
from latentlink.shared.model_dir import shipped_model_dir
from latentlink.shared.proto import container_pb2
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return np.stack([s.load() for s in find_sources(SAMPLES, (28, 28))[:40]])


@pytest.fixture(scope="module")
def packed(digits) -> bytes:
    return compress(digits)


def test_round_trip_has_the_models_quality_and_shape(digits, packed):
    restored = decompress(packed)
    assert restored.dtype == np.uint8 and restored.shape == digits.shape
    mse = np.mean((digits / 255.0 - restored / 255.0) ** 2)
    assert mse < 0.01  # q4 measures 0.0043 on the MNIST test set
    assert len(packed) < 40 * 30  # entropy-coded: ~16 B per digit with framing, against 784 raw


def test_container_is_self_describing(packed):
    container = unpack_container(packed)
    assert packed.startswith(MAGIC)
    assert container.model_name == "rd-q4" and container.image_shape == (28, 28)
    assert container.image_count == 40 and container.encoding_name == "ans"


def test_a_list_of_images_names_and_other_models(digits):
    data = compress(list(digits[:3]), quality=1, names=["a.png", "b/c.png", "d.png"])
    names, images = decompress_named(data)
    assert names == ["a.png", "b/c.png", "d.png"] and images.shape == (3, 28, 28)
    float_model = compress(digits[:2], model=shipped_model_dir("conv-k64"))
    assert unpack_container(float_model).encoding_name == "float32"
    assert decompress(float_model).shape == (2, 28, 28)
    assert decompress(compress(digits[0])).shape == (1, 28, 28)  # one (H, W) image
    assert decompress(compress(np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 32, 32), np.uint8), r"the model takes \[28, 28\]"),
        (np.zeros((2, 28, 28), np.float32), "must be uint8"),
        ([np.zeros((28, 28), np.uint8), np.zeros((28, 29), np.uint8)], "image 1 is"),
    ],
)
def test_images_the_model_cannot_take_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        compress(images, model="q4")  # an MNIST model, chosen explicitly: 28x28 only


def _repacked(data: bytes, edit) -> bytes:
    """The container with its body edited and a valid checksum: a well-formed lie."""
    body = container_pb2.Container.FromString(data[9:])
    edit(body)
    raw = body.SerializeToString()
    return MAGIC + struct.pack("<BI", 1, zlib.crc32(raw)) + raw


def _corrupt_latents(body) -> None:
    payload = bytearray(body.batches[0].payload)
    payload[0] ^= 0xFF
    body.batches[0].payload = bytes(payload)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[: len(d) // 2], "checksum: truncated or corrupt"),
        (lambda d: d[:-1], "checksum"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "checksum"),
        (lambda d: b"PK\x03\x04" + d[4:], "not a latentlink container"),
        (lambda d: b"", "not a latentlink container"),
        (lambda d: d[:4] + b"\x02" + d[5:], "format version 2"),
        (lambda d: _repacked(d, lambda b: setattr(b, "image_count", 41)), "says 41 images"),
        (lambda d: _repacked(d, lambda b: setattr(b.batches[0], "first_seq", 5)), "out of order"),
        (lambda d: _repacked(d, _corrupt_latents), "batch at image 0"),
    ],
)
def test_corrupt_or_truncated_containers_raise_container_error(packed, damage, message):
    with pytest.raises(ContainerError, match=message):
        decompress(damage(packed))


def test_unknown_decoder_is_named(packed):
    def other_decoder(body) -> None:
        body.decoder_digest = "ab" * 32
        for batch in body.batches:
            batch.decoder_digest = "ab" * 32

    with pytest.raises(UnknownDecoderError, match="decoder abababababab... is not among the shipped models"):
        decompress(_repacked(packed, other_decoder))
    # A model given explicitly must be the one the container names.
    with pytest.raises(UnknownDecoderError, match="is not among"):
        decompress(packed, model=shipped_model_dir("q1"))
    assert decompress(packed, model=shipped_model_dir("q4") / "decoder.lln").shape == (40, 28, 28)
    assert issubclass(UnknownDecoderError, ValueError)


def test_more_tiny_photos_than_a_batch_holds_still_round_trip():
    """1,030 images of 2x2 pixels fit the pixel budget of one batch, but not its 1,024-image limit."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (2, 2, 3), dtype=np.uint8) for _ in range(1030)]
    restored = decompress(compress(images, quality=1))
    assert restored.shape == (1030, 2, 2, 3)
