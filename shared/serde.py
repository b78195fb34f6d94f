"""Converts between the stream's protobuf messages and plain Python objects (the only place that does).

Sender and receiver logic works with the dataclasses and enums below and with
numpy arrays; the servicer and the sender's attempt call these functions at
the edge of the stream.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from google.protobuf.message import DecodeError

from latentlink.shared.context_coding import ContextTables
from latentlink.shared.entropy_coding import BitstreamError, EntropyTables
from latentlink.shared.model_format import MAX_DIM
from latentlink.shared.photo_codec import CodedImage, PhotoBatcher, PhotoLatents, PhotoTables
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import (
    MAX_BATCH_IMAGES,
    MAX_BATCH_PIXELS,
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    MAX_SEQUENCE,
)

__all__ = [
    "ENCODING_NAMES",
    "KEY_BYTES",
    "BatchOutcome",
    "CorruptBatch",
    "DecodedBatch",
    "Encoding",
    "LatentCodecError",
    "Limits",
    "OutputFormat",
    "ProtocolError",
    "SessionRequest",
    "SessionTerms",
    "batch_from_proto",
    "decodable_encodings",
    "durable_messages",
    "hello_from_proto",
    "hello_to_proto",
    "handshake_from_proto",
    "handshake_to_proto",
    "image_keys",
    "keys_from_durable",
    "model_accepted_to_proto",
    "summary_to_proto",
    "outcome_from_proto",
    "outcome_to_proto",
    "parse_receiver_message",
    "parse_sender_message",
    "latents_from_batch",
    "latents_to_batch",
    "coding_tables",
    "batch_pixels",
    "pack_names",
    "photo_batch",
    "photo_batches",
    "supported_encodings",
    "wire_latents",
]

ENCODING_NAMES = {
    "float64": pb.LATENT_ENCODING_FLOAT64,
    "float32": pb.LATENT_ENCODING_FLOAT32,
    "float16": pb.LATENT_ENCODING_FLOAT16,
    "ans": pb.LATENT_ENCODING_ANS,
    "hyperprior": pb.LATENT_ENCODING_HYPERPRIOR,
}
_RAW_DTYPES = {pb.LATENT_ENCODING_FLOAT32: np.dtype("<f4"), pb.LATENT_ENCODING_FLOAT16: np.dtype("<f2")}


class LatentCodecError(ValueError):
    """A latent batch is inconsistent with itself or with the decoder."""


Tables = EntropyTables | ContextTables | PhotoTables | None
Shape = tuple[int, int, int]  # height, width, channels


@dataclass(frozen=True)
class DecodedBatch:
    """A batch as the receiver sees it: sequence numbers, names, image shapes and latents.

    Fixed-shape decoders: `image_shape` and an (n, latent_dim) float64 array.
    Decoders of any size: `shapes` (one per image) and one PhotoLatents per image.
    """

    first_seq: int
    names: list[str]
    image_shape: tuple[int, ...]
    latents: np.ndarray | list[PhotoLatents]
    shapes: tuple[Shape, ...] = ()

    def vectors(self, rows: Sequence[int]) -> np.ndarray | list[np.ndarray]:
        """The logical latent vectors of these images (distinct rows, in order; what image keys hash): an array's
        rows (the array itself, not a copy, when they are all of them), or a list."""
        if self.shapes:
            return [self.latents[row].vector for row in rows]
        if len(rows) == len(self.latents):
            return self.latents
        return self.latents[list(rows)]  # an array: image_keys converts it once, not row by row


def coding_tables(network) -> Tables:
    """The exact coding machinery of a validated decoder: a photo model's, a context prior's, a factorised
    prior's, or none (a float model)."""
    if network.HasField("hyperprior"):
        return PhotoTables(network)
    if network.HasField("context_prior"):
        return ContextTables(network)
    return EntropyTables.from_network(network)


def decodable_encodings(has_entropy_model: bool, any_size: bool = False) -> set[int]:
    """Every encoding a receiver decodes, for a decoder with or without entropy tables (or of any size)."""
    if any_size:
        return {pb.LATENT_ENCODING_HYPERPRIOR}
    exact = {pb.LATENT_ENCODING_FLOAT64, pb.LATENT_ENCODING_FLOAT32, pb.LATENT_ENCODING_FLOAT16}
    return exact | ({pb.LATENT_ENCODING_ANS} if has_entropy_model else set())


def supported_encodings(tables: Tables) -> list[int]:
    """Encodings a model allows, most compact first; float16 is lossy and only used when asked for."""
    if isinstance(tables, PhotoTables):
        return [pb.LATENT_ENCODING_HYPERPRIOR]
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
    tables: EntropyTables | ContextTables | None = None,
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
        **pack_names(names),
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


def photo_batch(decoder_digest: str, first_seq: int, images: Sequence[CodedImage], latent_dim: int) -> pb.LatentBatch:
    """Packs images of any size, already entropy-coded one by one, into one message."""
    names = [image.name for image in images]
    shapes = [image.shape for image in images]
    same = len(set(shapes)) == 1
    return pb.LatentBatch(
        decoder_digest=decoder_digest,
        encoding=pb.LATENT_ENCODING_HYPERPRIOR,
        latent_dim=latent_dim,
        first_seq=first_seq,
        count=len(names),
        **pack_names(names),
        checksum=_checksum_of([image.latents.vector for image in images]),
        shapes=[pb.ImageShape(height=h, width=w, channels=c) for h, w, c in (shapes[:1] if same else shapes)],
        sizes=[len(image.bitstream) for image in images],
        payload=b"".join(image.bitstream for image in images),
    )


def photo_batches(
    decoder_digest: str,
    images: Iterable[CodedImage],
    latent_dim: int,
    first_seq: int = 0,
    max_pixels: int = MAX_BATCH_PIXELS,
    max_bytes: int = MAX_MESSAGE_BYTES // 2,
) -> Iterator[pb.LatentBatch]:
    """Packs coded images of any size into the batches a sender sends: within the pixel and byte limits."""
    batcher = PhotoBatcher(max_pixels, max_bytes)
    for group in (*(batcher.add(image) for image in images), batcher.flush()):
        if group:
            yield photo_batch(decoder_digest, first_seq, group, latent_dim)
            first_seq += len(group)


def batch_pixels(batch: pb.LatentBatch) -> int:
    """Height x width summed over a batch's images."""
    if batch.shapes:
        pixels = [shape.height * shape.width for shape in batch.shapes]
        return pixels[0] * batch.count if len(pixels) == 1 else sum(pixels)
    return math.prod(batch.image_shape) * batch.count


def latents_from_batch(
    batch: pb.LatentBatch, latent_dim: int, tables: Tables = None, max_pixels: int = MAX_BATCH_PIXELS
) -> DecodedBatch:
    """Unpacks and checks a batch; raises LatentCodecError (bitstream faults included)."""
    n = batch.count
    if not 0 < n <= MAX_BATCH_IMAGES:
        raise LatentCodecError(f"batch of {n} images (1..{MAX_BATCH_IMAGES} allowed)")
    if batch.latent_dim != latent_dim:
        raise LatentCodecError(f"batch latent width {batch.latent_dim}, decoder expects {latent_dim}")
    if isinstance(tables, PhotoTables) != (batch.encoding == pb.LATENT_ENCODING_HYPERPRIOR):
        raise LatentCodecError(f"latent encoding {batch.encoding} does not fit this decoder")
    names = _pattern_names(batch.name_pattern, n) if batch.HasField("name_pattern") else _names(batch.names, n)
    if isinstance(tables, PhotoTables):
        shapes = _photo_shapes(batch, max_pixels)
        latents = _photo_latents(batch, shapes, tables)
        if _checksum_of([item.vector for item in latents]) != batch.checksum:
            raise LatentCodecError("latents fail their checksum: corrupt payload")
        return DecodedBatch(batch.first_seq, names, (), latents, shapes)
    latents = _latents(batch, n, latent_dim, tables)
    if _checksum(latents) != batch.checksum:
        raise LatentCodecError("latents fail their checksum: corrupt payload")
    return DecodedBatch(batch.first_seq, names, tuple(batch.image_shape), latents)


def _photo_shapes(batch: pb.LatentBatch, max_pixels: int) -> tuple[Shape, ...]:
    """Each image's (height, width, channels), checked before anything is allocated for them."""
    n = batch.count
    if len(batch.shapes) not in (1, n):
        raise LatentCodecError(f"{len(batch.shapes)} image shapes for {n} images (1 or {n} expected)")
    shapes = [(s.height, s.width, s.channels) for s in batch.shapes]
    for h, w, c in shapes:
        if not (0 < h <= MAX_DIM and 0 < w <= MAX_DIM and c in (1, 3)):
            raise LatentCodecError(f"image shape {h}x{w}x{c} is not 1..{MAX_DIM} pixels each way, 1 or 3 channels")
    pixels = sum(h * w for h, w, _ in shapes) * (n if len(shapes) == 1 else 1)
    if pixels > max_pixels:
        raise LatentCodecError(f"batch of {pixels} pixels; this receiver takes at most {max_pixels} per batch")
    return tuple(shapes * n if len(shapes) == 1 else shapes)


def _photo_latents(batch: pb.LatentBatch, shapes: tuple[Shape, ...], tables: PhotoTables) -> list[PhotoLatents]:
    if len(batch.sizes) != batch.count or sum(batch.sizes) != len(batch.payload):
        raise LatentCodecError(f"{len(batch.sizes)} bitstream sizes for {batch.count} images and the payload")
    latents, start = [], 0
    for size, (h, w, _) in zip(batch.sizes, shapes, strict=True):
        try:
            latents.append(tables.decode(batch.payload[start : start + size], h, w))
        except BitstreamError as exc:
            raise LatentCodecError(str(exc)) from None
        start += size
    return latents


def _latents(
    batch: pb.LatentBatch, n: int, latent_dim: int, tables: EntropyTables | ContextTables | None
) -> np.ndarray:
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


_NUMBERED = re.compile(r"(.*?)(\d+)(\D*)", re.DOTALL)
MAX_PATTERN_WIDTH = 20  # digits: every uint64 fits


def pack_names(names: Sequence[str]) -> dict:
    """The LatentBatch fields that carry these names: a NamePattern for a numbered series, else the zlib list."""
    match = _NUMBERED.fullmatch(names[0]) if names else None
    if match and len(match.group(2)) <= MAX_PATTERN_WIDTH:
        prefix, digits, suffix = match.groups()
        pattern = pb.NamePattern(prefix=prefix, first=int(digits), width=len(digits), suffix=suffix)
        if _pattern_names(pattern, len(names)) == list(names):
            return {"name_pattern": pattern}
    return {"names": zlib.compress("\0".join(names).encode(), 9)}


def _pattern_names(pattern: pb.NamePattern, n: int) -> list[str]:
    if (
        pattern.width > MAX_PATTERN_WIDTH
        or len(pattern.prefix.encode()) + len(pattern.suffix.encode()) > MAX_NAME_BYTES
    ):
        raise LatentCodecError("name pattern is wider or longer than allowed")
    # printf-style: half the time of an f-string per name
    template = pattern.prefix.replace("%", "%%") + f"%0{pattern.width}d" + pattern.suffix.replace("%", "%%")
    return [template % number for number in range(pattern.first, pattern.first + n)]


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


def _checksum_of(vectors: Sequence[np.ndarray]) -> int:
    """The CRC-32 of several images' latent vectors, one after the other."""
    crc = 0
    for vector in vectors:
        crc = zlib.crc32((np.ascontiguousarray(vector, dtype="<f8") + 0.0).tobytes(), crc)
    return crc


class Encoding(IntEnum):
    """Latent wire encodings (protos: LatentEncoding)."""

    FLOAT64 = pb.LATENT_ENCODING_FLOAT64
    FLOAT32 = pb.LATENT_ENCODING_FLOAT32
    FLOAT16 = pb.LATENT_ENCODING_FLOAT16
    ANS = pb.LATENT_ENCODING_ANS
    HYPERPRIOR = pb.LATENT_ENCODING_HYPERPRIOR

    @property
    def label(self) -> str:
        return self.name.lower()


class OutputFormat(IntEnum):
    """How a receiver stores images (protos: OutputFormat)."""

    PNG = pb.OUTPUT_FORMAT_PNG
    NPZ = pb.OUTPUT_FORMAT_NPZ


class ProtocolError(ValueError):
    """A message that breaks the protocol; `status` names the gRPC status code the stream ends with."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The receiver's bounds, advertised in the handshake."""

    max_message_bytes: int
    max_batch_images: int
    max_model_bytes: int
    max_chunk_bytes: int
    max_decoder_activations: int
    max_decoder_macs: int
    max_batch_pixels: int


@dataclass(frozen=True)
class SessionRequest:
    """A sender's hello: the decoder it encodes for, what it can send, and the session."""

    protocol_version: int
    decoder_digest: str
    image_shape: tuple[int, ...]
    latent_dim: int
    decoder_bytes: int
    model_name: str
    has_entropy_model: bool
    encodings: tuple[int, ...]
    session: str
    sender_id: str = ""


@dataclass(frozen=True)
class SessionTerms:
    """A receiver's handshake: what it has, what it picked, where images go, what is already there."""

    protocol_version: int
    has_decoder: bool
    encoding: int
    limits: Limits
    session_dir: str
    output_format: int
    durable_images: int = 0
    model_bytes_held: int = 0
    receiver: str = ""  # which receiver this is (`receiver --name`)


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a batch: images first_seq.. first_seq + count - 1 written except `failures` (seq -> why)."""

    first_seq: int
    count: int
    failures: dict[int, str] = field(default_factory=dict)
    resend: bool = False  # corrupt in transit as a whole: send the same batch again, once


@dataclass(frozen=True)
class CorruptBatch:
    """A batch whose latents or names did not survive the trip (checksum, bitstream or names)."""

    first_seq: int
    count: int
    reason: str


def batch_from_proto(
    batch: pb.LatentBatch,
    decoder_digest: str,
    encoding: int,
    latent_dim: int,
    tables: Tables,
    max_pixels: int = MAX_BATCH_PIXELS,
    max_images: int = MAX_BATCH_IMAGES,
) -> DecodedBatch | CorruptBatch:
    """Checks a batch against its session and unpacks it; raises ProtocolError for one that breaks the protocol.

    `max_pixels`, `max_images`: the limits the receiver gave this session.
    """
    if batch.decoder_digest != decoder_digest:
        raise ProtocolError(
            "INVALID_ARGUMENT", f'batch names decoder "{batch.decoder_digest[:64]}", session uses "{decoder_digest}"'
        )
    if batch.encoding != encoding:
        raise ProtocolError("INVALID_ARGUMENT", f"batch encoding {batch.encoding} was not negotiated")
    if not 0 < batch.count <= max_images:
        raise ProtocolError("RESOURCE_EXHAUSTED", f"batch of {batch.count} images (1..{max_images})")
    if batch.first_seq + batch.count > MAX_SEQUENCE:
        raise ProtocolError("INVALID_ARGUMENT", f"sequence numbers must stay below {MAX_SEQUENCE}")
    try:
        return latents_from_batch(batch, latent_dim, tables, max_pixels)
    except LatentCodecError as exc:
        return CorruptBatch(batch.first_seq, batch.count, str(exc))


def parse_sender_message(data: bytes) -> pb.SenderMessage:
    """Parses a sender's message as received; garbled bytes are DATA_LOSS (worth a resend), not a crash."""
    try:
        return pb.SenderMessage.FromString(data)
    except DecodeError:
        raise ProtocolError("DATA_LOSS", "a message from the sender does not parse: corrupt in transit") from None


def parse_receiver_message(data: bytes) -> pb.ReceiverMessage:
    """Parses a receiver's message as received; raises ProtocolError (DATA_LOSS) for garbled bytes.

    A message that parses but carries none of the kinds this protocol version knows is garbled too: a
    receiver always sends one (a flipped tag byte turns the kind into an unknown field; seen in CI).
    """
    try:
        message = pb.ReceiverMessage.FromString(data)
    except DecodeError:
        message = None
    if message is None or message.WhichOneof("kind") is None:
        raise ProtocolError("DATA_LOSS", "a message from the receiver does not parse: corrupt in transit")
    return message


def hello_to_proto(request: SessionRequest) -> pb.SenderMessage:
    return pb.SenderMessage(
        hello=pb.Hello(
            protocol_version=request.protocol_version,
            decoder_digest=request.decoder_digest,
            decoder=pb.DecoderSummary(
                image_shape=request.image_shape,
                latent_dim=request.latent_dim,
                size_bytes=request.decoder_bytes,
                model_name=request.model_name,
                has_entropy_model=request.has_entropy_model,
            ),
            encodings=request.encodings,
            session=request.session,
            sender_id=request.sender_id,
        )
    )


def hello_from_proto(hello: pb.Hello) -> SessionRequest:
    return SessionRequest(
        protocol_version=hello.protocol_version,
        decoder_digest=hello.decoder_digest,
        image_shape=tuple(hello.decoder.image_shape),
        latent_dim=hello.decoder.latent_dim,
        decoder_bytes=hello.decoder.size_bytes,
        model_name=hello.decoder.model_name,
        has_entropy_model=hello.decoder.has_entropy_model,
        encodings=tuple(hello.encodings),
        session=hello.session,
        sender_id=hello.sender_id,
    )


def handshake_to_proto(terms: SessionTerms) -> pb.ReceiverMessage:
    return pb.ReceiverMessage(
        handshake=pb.Handshake(
            protocol_version=terms.protocol_version,
            has_decoder=terms.has_decoder,
            encoding=terms.encoding,
            limits=pb.Limits(**terms.limits.__dict__),
            session_dir=terms.session_dir,
            output_format=terms.output_format,
            durable_images=terms.durable_images,
            model_bytes_held=terms.model_bytes_held,
            receiver=terms.receiver,
        )
    )


def handshake_from_proto(handshake: pb.Handshake) -> SessionTerms:
    limits = handshake.limits
    return SessionTerms(
        protocol_version=handshake.protocol_version,
        has_decoder=handshake.has_decoder,
        encoding=handshake.encoding,
        limits=Limits(**{name: getattr(limits, name) for name in Limits.__dataclass_fields__}),
        session_dir=handshake.session_dir,
        output_format=handshake.output_format,
        durable_images=handshake.durable_images,
        model_bytes_held=handshake.model_bytes_held,
        receiver=handshake.receiver,
    )


def outcome_to_proto(outcome: BatchOutcome) -> pb.ReceiverMessage:
    failures = sorted(outcome.failures.items())
    return pb.ReceiverMessage(
        acks=pb.AckBatch(
            first_seq=outcome.first_seq,
            count=outcome.count,
            failures=[pb.ImageFailure(seq=seq, error=error) for seq, error in failures],
            resend=outcome.resend,
            checksum=_ack_checksum(outcome.first_seq, outcome.count, outcome.resend, failures),
        )
    )


def outcome_from_proto(acks: pb.AckBatch) -> BatchOutcome:
    """Unpacks an acknowledgement; raises ProtocolError (DATA_LOSS) when it fails its checksum."""
    failures = [(f.seq, f.error) for f in acks.failures]
    if _ack_checksum(acks.first_seq, acks.count, acks.resend, failures) != acks.checksum:
        raise ProtocolError("DATA_LOSS", "an acknowledgement fails its checksum: corrupt in transit")
    return BatchOutcome(acks.first_seq, acks.count, dict(failures), acks.resend)


def _ack_checksum(first_seq: int, count: int, resend: bool, failures: Sequence[tuple[int, str]]) -> int:
    crc = zlib.crc32(struct.pack("<QIB", first_seq, count, int(resend)))
    for seq, error in failures:
        encoded = error.encode()
        crc = zlib.crc32(struct.pack("<QI", seq, len(encoded)) + encoded, crc)
    return crc


def model_accepted_to_proto(decoder_digest: str, received_bytes: int) -> pb.ReceiverMessage:
    return pb.ReceiverMessage(
        model_accepted=pb.ModelAccepted(decoder_digest=decoder_digest, received_bytes=received_bytes)
    )


def summary_to_proto(written: int, failed: int) -> pb.ReceiverMessage:
    return pb.ReceiverMessage(summary=pb.Summary(images_written=written, images_failed=failed))


# Image keys: what a receiver's journal remembers of each durable image.
KEY_BYTES = 8
# Keys per DurableImages message: half a megabyte, far under any message limit.
KEYS_PER_MESSAGE = 65536


def image_keys(decoder_digest: str, names: Sequence[str], latents: np.ndarray | Sequence[np.ndarray]) -> list[bytes]:
    """Each image's key: BLAKE2b-64 of name, 0, decoder digest, 0, latents as little-endian float64 (see protos).

    `latents`: one latent vector per image (the rows of an array, or vectors of different lengths).
    """
    prefix = b"\0" + decoder_digest.encode("ascii") + b"\0"
    if isinstance(latents, np.ndarray) and latents.ndim == 2:  # one conversion for the batch; its rows are hashed
        rows = np.ascontiguousarray(latents, dtype="<f8") + 0.0  # in place (a third less time than bytes slices)
    else:
        rows = ((np.ascontiguousarray(row, dtype="<f8") + 0.0).tobytes() for row in latents)  # -0.0 counts as 0
    blake2b = hashlib.blake2b
    return [
        blake2b(b"".join((name.encode(), prefix, row)), digest_size=KEY_BYTES).digest()
        for name, row in zip(names, rows, strict=True)
    ]


def durable_messages(keys: bytes) -> Iterator[pb.ReceiverMessage]:
    """Packs concatenated keys into DurableImages messages."""
    step = KEYS_PER_MESSAGE * KEY_BYTES
    for start in range(0, len(keys), step):
        yield pb.ReceiverMessage(durable=pb.DurableImages(keys=keys[start : start + step]))


def keys_from_durable(message: pb.DurableImages) -> set[bytes]:
    if len(message.keys) % KEY_BYTES:
        raise ProtocolError("INVALID_ARGUMENT", f"durable image keys of {len(message.keys)} bytes")
    return {message.keys[i : i + KEY_BYTES] for i in range(0, len(message.keys), KEY_BYTES)}
