"""The latentlink file format: magic, format version, CRC-32, and a `Container` message (protos/container.proto)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from latentlink.shared.model_format import is_any_size
from latentlink.shared.proto import container_pb2, latentlink_pb2

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Container",
    "ContainerError",
    "UnknownDecoderError",
    "pack_container",
    "unpack_container",
]

MAGIC = b"LLNK"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBI")  # magic, format version, CRC-32 of the body


class ContainerError(ValueError):
    """Data that is not a usable latentlink container: not one, corrupt, truncated or of a newer format."""


class UnknownDecoderError(ContainerError):
    """A container whose decoder (named by digest) is not available here."""


@dataclass(frozen=True)
class Container:
    """What a file holds: which decoder decodes it, the images' shape and count, and their latent batches."""

    decoder_digest: str
    model_name: str
    image_shape: tuple[int, ...]
    encoding: int
    batches: tuple[latentlink_pb2.LatentBatch, ...]

    @property
    def image_count(self) -> int:
        return sum(batch.count for batch in self.batches)

    @property
    def encoding_name(self) -> str:
        return latentlink_pb2.LatentEncoding.Name(self.encoding).removeprefix("LATENT_ENCODING_").lower()


def pack_container(container: Container) -> bytes:
    """Serialises a container with its header and checksum."""
    body = container_pb2.Container(
        decoder_digest=container.decoder_digest,
        model_name=container.model_name,
        image_shape=container.image_shape,
        image_count=container.image_count,
        encoding=container.encoding,
        batches=container.batches,
    ).SerializeToString(deterministic=True)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, zlib.crc32(body)) + body


def unpack_container(data: bytes) -> Container:
    """Parses and checks a container; raises ContainerError saying what is wrong."""
    data = bytes(data)
    if len(data) < _HEADER.size or not data.startswith(MAGIC):
        raise ContainerError("not a latentlink container (no LLNK header)")
    _, version, checksum = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ContainerError(f"container format version {version}; this latentlink reads version {FORMAT_VERSION}")
    body = data[_HEADER.size :]
    if zlib.crc32(body) != checksum:
        raise ContainerError("container fails its checksum: truncated or corrupt")
    message = container_pb2.Container()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise ContainerError(f"container body does not parse: {exc}") from None
    container = Container(
        decoder_digest=message.decoder_digest,
        model_name=message.model_name,
        image_shape=tuple(message.image_shape),
        encoding=message.encoding,
        batches=tuple(message.batches),
    )
    _check_consistent(container, message.image_count)
    return container


def _check_consistent(container: Container, image_count: int) -> None:
    shape = container.image_shape
    any_size = len(shape) == 3 and is_any_size(shape) and shape[2] > 0  # shapes travel in each batch
    if not any_size and (len(shape) != 2 or not all(shape)):
        raise ContainerError(f"image shape {list(shape)} is neither height, width nor [0, 0, channels]")
    expected_seq = 0
    for batch in container.batches:
        if batch.decoder_digest != container.decoder_digest or batch.encoding != container.encoding:
            raise ContainerError("a batch names another decoder or encoding than its container")
        if batch.first_seq != expected_seq or tuple(batch.image_shape) != (() if any_size else shape):
            raise ContainerError(f"batch at image {batch.first_seq} is out of order or of another shape")
        expected_seq += batch.count
    if expected_seq != image_count:
        raise ContainerError(f"container says {image_count} images, its batches hold {expected_seq}")
