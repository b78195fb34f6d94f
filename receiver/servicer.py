"""The receiver's side of one sender session: handshake, model transfer, decode, acknowledge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from receiver.model_store import ModelStore, is_digest
from receiver.output import UnsafeNameError, output_path
from shared.image_io import write_png_atomic
from shared.latent_codec import SUPPORTED_ENCODINGS, LatentCodecError, latents_from_batch
from shared.metrics import to_uint8
from shared.model_format import ModelFormatError
from shared.proto import latentlink_pb2 as pb
from shared.proto import latentlink_pb2_grpc
from shared.protocol import (
    MAX_BATCH_IMAGES,
    MAX_MESSAGE_BYTES,
    MAX_MODEL_BYTES,
    MODEL_CHUNK_BYTES,
    PROTOCOL_VERSION,
)

__all__ = ["LatentLinkServicer"]

log = logging.getLogger(__name__)

LIMITS = pb.Limits(
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch_images=MAX_BATCH_IMAGES,
    max_model_bytes=MAX_MODEL_BYTES,
    max_chunk_bytes=MODEL_CHUNK_BYTES,
)


class LatentLinkServicer(latentlink_pb2_grpc.LatentLinkServicer):
    """Serves sender sessions, writing reconstructions under `out_dir`."""

    def __init__(self, out_dir: Path, store: ModelStore) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.store = store

    def Stream(self, request_iterator: Iterator[pb.SenderMessage], context: grpc.ServicerContext):
        peer = context.peer()
        hello = _expect(request_iterator, "hello", context).hello
        digest = hello.decoder_digest
        _check_hello(hello, context)
        has_decoder = self.store.has(digest)
        log.info(
            "%s: session for decoder %s (%s), cached=%s",
            peer,
            digest[:12],
            hello.decoder.model_name,
            has_decoder,
        )
        yield pb.ReceiverMessage(
            handshake=pb.Handshake(
                protocol_version=PROTOCOL_VERSION,
                has_decoder=has_decoder,
                encoding=pb.LATENT_ENCODING_FLOAT64,
                limits=LIMITS,
            )
        )
        if not has_decoder:
            received = _receive_model(request_iterator, hello.decoder.size_bytes, context)
            try:
                self.store.add(digest, received)
            except ModelFormatError as exc:
                log.warning("%s: rejected decoder transfer: %s", peer, exc)
                context.abort(grpc.StatusCode.DATA_LOSS, f"decoder transfer rejected: {exc}")
            yield pb.ReceiverMessage(
                model_accepted=pb.ModelAccepted(decoder_digest=digest, received_bytes=len(received))
            )
        try:
            decoder = self.store.decoder(digest)
        except (ModelFormatError, OSError) as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cached decoder {digest[:12]} is unusable: {exc}")
        written = failed = 0
        names_seen: set[Path] = set()
        for message in request_iterator:
            kind = message.WhichOneof("kind")
            if kind == "finish":
                log.info("%s: session done, %d written, %d failed", peer, written, failed)
                yield pb.ReceiverMessage(summary=pb.Summary(images_written=written, images_failed=failed))
                return
            if kind != "latent_batch":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'unexpected "{kind}" message after the handshake')
            acks = self._write_batch(message.latent_batch, digest, decoder, names_seen, context)
            written += sum(a.status == pb.ACK_STATUS_WRITTEN for a in acks)
            failed += sum(a.status == pb.ACK_STATUS_FAILED for a in acks)
            yield pb.ReceiverMessage(acks=pb.AckBatch(acks=acks))
        log.warning("%s: stream ended without finish (%d written, %d failed)", peer, written, failed)

    def _write_batch(self, batch, digest, decoder, names_seen, context) -> list[pb.ImageAck]:
        if batch.decoder_digest != digest:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'batch names decoder "{batch.decoder_digest[:64]}", session uses "{digest}"',
            )
        if len(batch.images) > MAX_BATCH_IMAGES:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"batch of {len(batch.images)} images exceeds {MAX_BATCH_IMAGES}",
            )
        try:
            headers, latents = latents_from_batch(batch, decoder.info.input_shape[0])
        except LatentCodecError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        image_shape = decoder.info.output_shape
        acks: list[pb.ImageAck] = []
        targets: list[Path | None] = []
        for header in headers:
            try:
                if header.shape != image_shape:
                    raise ValueError(f"image shape {list(header.shape)} differs from the decoder's {list(image_shape)}")
                target = output_path(self.out_dir, header.name)
                if target in names_seen:
                    raise ValueError(f'another image of this session already maps to "{target.name}"')
                if not np.all(np.isfinite(latents[len(targets)])):
                    raise ValueError("latent vector has non-finite values")
                names_seen.add(target)
                targets.append(target)
            except (UnsafeNameError, ValueError) as exc:
                targets.append(None)
                acks.append(pb.ImageAck(seq=header.seq, name=header.name, status=pb.ACK_STATUS_FAILED, error=str(exc)))
        good = [i for i, t in enumerate(targets) if t is not None]
        pixels = to_uint8(decoder(latents[good].astype(np.float32))) if good else []
        root = self.out_dir.resolve()
        for row, index in enumerate(good):
            header, target = headers[index], targets[index]
            try:
                write_png_atomic(target, pixels[row])
                acks.append(
                    pb.ImageAck(
                        seq=header.seq,
                        name=header.name,
                        status=pb.ACK_STATUS_WRITTEN,
                        path=target.relative_to(root).as_posix(),
                    )
                )
            except OSError as exc:
                acks.append(
                    pb.ImageAck(
                        seq=header.seq,
                        name=header.name,
                        status=pb.ACK_STATUS_FAILED,
                        error=f"write failed: {exc}",
                    )
                )
        return acks


def _expect(requests: Iterator[pb.SenderMessage], kind: str, context: grpc.ServicerContext) -> pb.SenderMessage:
    message = next(requests, None)
    if message is None:
        context.abort(grpc.StatusCode.CANCELLED, f"stream ended before {kind}")
    if message.WhichOneof("kind") != kind:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'expected "{kind}", got "{message.WhichOneof("kind")}"')
    return message


def _check_hello(hello: pb.Hello, context: grpc.ServicerContext) -> None:
    if hello.protocol_version != PROTOCOL_VERSION:
        context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"protocol version mismatch: sender speaks {hello.protocol_version}, receiver speaks {PROTOCOL_VERSION}",
        )
    if not is_digest(hello.decoder_digest):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f'"{hello.decoder_digest[:80]}" is not a SHA-256 decoder digest'
        )
    if not 0 < hello.decoder.size_bytes <= MAX_MODEL_BYTES:
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"decoder of {hello.decoder.size_bytes} bytes; limit is {MAX_MODEL_BYTES}",
        )
    if not set(SUPPORTED_ENCODINGS) & set(hello.encodings):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no latent encoding in common (receiver supports float64)")


def _receive_model(requests: Iterator[pb.SenderMessage], size: int, context: grpc.ServicerContext) -> bytes:
    """Collects the decoder's chunks, in order, up to the size announced in the hello."""
    data = bytearray()
    while True:
        chunk = _expect(requests, "model_chunk", context).model_chunk
        if chunk.offset != len(data):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model chunk at offset {chunk.offset}, expected {len(data)}",
            )
        if len(chunk.data) > MODEL_CHUNK_BYTES or len(data) + len(chunk.data) > size:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"model transfer exceeds the announced {size} bytes or chunk limit",
            )
        data += chunk.data
        if chunk.last:
            if len(data) != size:
                context.abort(grpc.StatusCode.DATA_LOSS, f"decoder transfer truncated: {len(data)} of {size} bytes")
            return bytes(data)
