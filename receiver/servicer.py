"""The receiver's side of one sender session: handshake, model transfer, decode, acknowledge."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from latentlink.receiver.inbox import DEFAULT_IDLE_TIMEOUT_S, Inbox, Notice
from latentlink.receiver.log_text import peer_text
from latentlink.receiver.model_store import ModelStore, is_digest
from latentlink.receiver.output import UnsafeNameError, output_path, remove_stale_temporaries, write_files_durably
from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.image_io import batch_file_name, encode_png
from latentlink.shared.latent_codec import LatentCodecError, latents_from_batch
from latentlink.shared.model_format import ModelFormatError
from latentlink.shared.network_runtime import decode_images
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import latentlink_pb2_grpc
from latentlink.shared.protocol import (
    MAX_BATCH_IMAGES,
    MAX_MESSAGE_BYTES,
    MAX_MODEL_BYTES,
    MAX_SEQUENCE,
    MODEL_CHUNK_BYTES,
    PROTOCOL_VERSION,
    SENDER_ID,
    SESSION_NAME,
)

__all__ = ["LatentLinkServicer"]

log = logging.getLogger(__name__)

# How long a reconnecting sender waits for its abandoned stream to finish the batch it is writing.
TAKEOVER_WAIT_S = 30.0
# Decoded batches waiting for the disk at most; beyond it, decoding waits for the oldest write.
MAX_WRITES_QUEUED = 2
LIMITS = pb.Limits(
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch_images=MAX_BATCH_IMAGES,
    max_model_bytes=MAX_MODEL_BYTES,
    max_chunk_bytes=MODEL_CHUNK_BYTES,
)


class LatentLinkServicer(latentlink_pb2_grpc.LatentLinkServicer):
    """Serves sender sessions, writing reconstructions under `out_dir`."""

    def __init__(
        self,
        out_dir: Path,
        store: ModelStore,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        output_format: int = pb.OUTPUT_FORMAT_PNG,
        on_session_end: Callable[[dict], None] = lambda summary: None,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.output_format = output_format
        self.on_session_end = on_session_end
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if removed := remove_stale_temporaries(self.out_dir):
            log.info("removed %d half-written files left by an earlier run", removed)
        self.store = store
        self._open_sessions: dict[str, _OpenSession] = {}
        self._lock = threading.Lock()

    def Stream(self, request_iterator: Iterator[pb.SenderMessage], context: grpc.ServicerContext):
        inbox = Inbox(request_iterator, context, self.idle_timeout_s)
        events = iter(inbox)
        hello = _expect(events, "hello", context).hello
        _check_hello(hello, context)
        mine = _OpenSession(hello.sender_id, inbox)
        self._open(hello.session, mine, context)
        try:
            yield from self._serve(hello, inbox, events, context)
        finally:
            with self._lock:
                if self._open_sessions.get(hello.session) is mine:
                    del self._open_sessions[hello.session]
            mine.released.set()

    def _open(self, name: str, mine: _OpenSession, context: grpc.ServicerContext) -> None:
        """Registers a session's stream; the same sender's reconnect takes it over from its abandoned stream."""
        with self._lock:
            holder = self._open_sessions.get(name)
            if holder is None:
                self._open_sessions[name] = mine
                return
            if not (mine.sender_id and mine.sender_id == holder.sender_id):
                message = f'session "{name}" is open in another stream; pick another'
                context.abort(grpc.StatusCode.ALREADY_EXISTS, message)
            self._open_sessions[name] = mine
        holder.inbox.take_over()
        # The old stream finishes the batch it is writing; two streams never write one session at once.
        if not holder.released.wait(TAKEOVER_WAIT_S):
            context.abort(grpc.StatusCode.UNAVAILABLE, f'session "{name}": its previous stream is still finishing')

    def _serve(self, hello: pb.Hello, inbox: Inbox, events: Iterator, context: grpc.ServicerContext):
        peer = f"{context.peer()} [{hello.session}]"
        digest = hello.decoder_digest
        encoding = _pick_encoding(hello, context)
        has_decoder = self.store.has(digest)
        log.info(
            "%s: session for decoder %s (%s), cached=%s, encoding %s",
            peer,
            digest[:12],
            peer_text(hello.decoder.model_name),
            has_decoder,
            pb.LatentEncoding.Name(encoding),
        )
        yield pb.ReceiverMessage(
            handshake=pb.Handshake(
                protocol_version=PROTOCOL_VERSION,
                has_decoder=has_decoder,
                encoding=encoding,
                limits=LIMITS,
                session_dir=hello.session,
                output_format=self.output_format,
            )
        )
        if not has_decoder:
            received = _receive_model(events, hello.decoder.size_bytes, context)
            try:
                self.store.add(digest, received)
            except ModelFormatError as exc:
                log.warning("%s: rejected decoder transfer: %s", peer, peer_text(exc))
                context.abort(grpc.StatusCode.DATA_LOSS, f"decoder transfer rejected: {exc}")
            yield pb.ReceiverMessage(
                model_accepted=pb.ModelAccepted(decoder_digest=digest, received_bytes=len(received))
            )
        try:
            decoder = self.store.decoder(digest)
        except (ModelFormatError, OSError) as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cached decoder {digest[:12]} is unusable: {exc}")
        tables = EntropyTables.from_network(decoder.info.network)
        if encoding == pb.LATENT_ENCODING_ANS and tables is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "decoder has no entropy model, so ANS is impossible")
        session = _Session(hello.session, self.out_dir / hello.session, self.output_format, digest, decoder, tables)
        # One writer per session: PNG encoding and the group-commit write of batch k overlap
        # the decoding of batch k+1, and a session's files never contend for their folder's lock.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{hello.session}") as writer:
            yield from self._serve_batches(session, writer, inbox, events, context, peer, hello, encoding)

    def _serve_batches(
        self,
        session: _Session,
        writer: ThreadPoolExecutor,
        inbox: Inbox,
        events: Iterator,
        context: grpc.ServicerContext,
        peer: str,
        hello: pb.Hello,
        encoding: int,
    ) -> Iterator[pb.ReceiverMessage]:
        """Decodes latent batches as they come and acknowledges each the moment its files are durable."""
        writing: deque[Future] = deque()  # batches being written, in order
        digest = session.digest
        for event in events:
            if isinstance(event, Notice):  # a write finished: acknowledge, in order, whatever is durable
                while writing and writing[0].done():
                    yield pb.ReceiverMessage(acks=writing.popleft().result())
                continue
            kind = event.WhichOneof("kind")
            if kind == "finish":
                while writing:
                    yield pb.ReceiverMessage(acks=writing.popleft().result())
                log.info(
                    "%s: session done: decoder=%s encoding=%s written=%d failed=%d latent_bytes=%d",
                    peer,
                    digest[:12],
                    pb.LatentEncoding.Name(encoding),
                    session.written,
                    session.failed,
                    session.bytes_in,
                )
                self.on_session_end(session.summary(context.peer(), hello.decoder.model_name, encoding))
                yield pb.ReceiverMessage(
                    summary=pb.Summary(images_written=session.written, images_failed=session.failed)
                )
                return
            if kind != "latent_batch":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'unexpected "{kind}" message after the handshake')
            session.bytes_in += event.latent_batch.ByteSize()
            acks, files = self._decode_batch(event.latent_batch, session, encoding, context)
            writing.append(writer.submit(session.write, acks, files))
            writing[-1].add_done_callback(inbox.post)
            while len(writing) > MAX_WRITES_QUEUED:  # decoding must not run far ahead of the disk
                yield pb.ReceiverMessage(acks=writing.popleft().result())
        for pending in writing:
            pending.result()  # what was decoded is still written; the sender resends it after a break
        log.warning("%s: stream ended without finish (%d written, %d failed)", peer, session.written, session.failed)

    def _decode_batch(
        self, batch: pb.LatentBatch, session: _Session, encoding: int, context: grpc.ServicerContext
    ) -> tuple[pb.AckBatch, dict[int, tuple[Path, np.ndarray]]]:
        """Checks and decodes a batch: acks holding per-image failures so far, and {seq: (path, pixels)}."""
        started = time.perf_counter()
        if batch.decoder_digest != session.digest:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'batch names decoder "{batch.decoder_digest[:64]}", session uses "{session.digest}"',
            )
        if batch.encoding != encoding:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"batch encoding {batch.encoding} was not negotiated")
        if not 0 < batch.count <= MAX_BATCH_IMAGES:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"batch of {batch.count} images (1..{MAX_BATCH_IMAGES})")
        if batch.first_seq + batch.count > MAX_SEQUENCE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"sequence numbers must stay below {MAX_SEQUENCE}")
        acks = pb.AckBatch(first_seq=batch.first_seq, count=batch.count)
        try:
            decoded = latents_from_batch(batch, session.decoder.info.input_shape[0], session.tables)
        except LatentCodecError as exc:
            acks.failures.extend(pb.ImageFailure(seq=batch.first_seq + i, error=str(exc)) for i in range(batch.count))
            return acks, {}
        targets: dict[int, Path] = {}
        batch_targets: set[Path] = set()
        finite = np.all(np.isfinite(decoded.latents), axis=1)
        for row, name in enumerate(decoded.names):
            try:
                if decoded.image_shape != session.decoder.info.output_shape:
                    raise ValueError(
                        f"image shape {list(decoded.image_shape)} differs from the decoder's "
                        f"{list(session.decoder.info.output_shape)}"
                    )
                target = output_path(session.folder, name)  # the name alone is checked, drive letters too
                if target in batch_targets:  # across batches, the sender keeps names apart (memory stays flat)
                    raise ValueError(f'another image of this batch maps to "{target.name}"')
                if not finite[row]:
                    raise ValueError("latent vector has non-finite values")
                batch_targets.add(target)
                targets[row] = target
            except (UnsafeNameError, ValueError) as exc:
                acks.failures.append(pb.ImageFailure(seq=batch.first_seq + row, error=str(exc)))
        rows = sorted(targets)
        pixels = decode_images(session.decoder, decoded.latents[rows]) if rows else []
        session.decode_s += time.perf_counter() - started
        return acks, {batch.first_seq + row: (targets[row], image) for row, image in zip(rows, pixels, strict=True)}


@dataclass
class _OpenSession:
    """The stream that holds a session now, and when it lets go."""

    sender_id: str
    inbox: Inbox
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Session:
    """What one stream has agreed on and done so far."""

    name: str
    folder: Path
    output_format: int
    digest: str
    decoder: object
    tables: EntropyTables | None
    written: int = 0
    failed: int = 0
    bytes_in: int = 0
    decode_s: float = 0.0  # wall time decoding latents to pixels
    write_s: float = 0.0  # wall time encoding and durably writing files
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, acks: pb.AckBatch, images: dict[int, tuple[Path, np.ndarray]]) -> pb.AckBatch:
        """Durably writes a decoded batch; completes `acks` with any write failures."""
        started = time.perf_counter()
        seqs = list(images)
        if self.output_format == pb.OUTPUT_FORMAT_NPZ and images:
            names = [path.relative_to(self.folder).as_posix() for path, _ in images.values()]
            pixels = np.stack([image for _, image in images.values()])
            failed = write_files_durably([(self.folder / batch_file_name(acks.first_seq), _npz(names, pixels))])
            errors = {i: failed[0] for i in range(len(seqs))} if failed else {}
        else:
            errors = write_files_durably([(path, encode_png(pixels)) for path, pixels in images.values()])
        acks.failures.extend(pb.ImageFailure(seq=seqs[i], error=reason) for i, reason in sorted(errors.items()))
        with self.lock:
            self.failed += len(acks.failures)
            self.written += acks.count - len(acks.failures)
            self.write_s += time.perf_counter() - started
        return acks

    def summary(self, peer: str, model_name: str, encoding: int) -> dict:
        """A machine-readable record of the finished session."""
        return {
            "event": "session",
            "session": self.name,
            "peer": peer,
            "model": model_name,
            "decoder_digest": self.digest,
            "encoding": pb.LatentEncoding.Name(encoding).removeprefix("LATENT_ENCODING_").lower(),
            "written": self.written,
            "failed": self.failed,
            "latent_bytes": self.bytes_in,
            "decode_s": round(self.decode_s, 6),
            "write_s": round(self.write_s, 6),
        }


def _npz(names: list[str], pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=pixels, names=np.array(names, dtype=str))
    return buffer.getvalue()


def _pick_encoding(hello: pb.Hello, context: grpc.ServicerContext) -> int:
    """Takes the sender's most preferred encoding that this receiver can decode."""
    possible = {
        pb.LATENT_ENCODING_FLOAT64,
        pb.LATENT_ENCODING_FLOAT32,
        pb.LATENT_ENCODING_FLOAT16,
    } | ({pb.LATENT_ENCODING_ANS} if hello.decoder.has_entropy_model else set())
    for encoding in hello.encodings:
        if encoding in possible:
            return encoding
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no latent encoding in common with the sender")


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
    if not SESSION_NAME.fullmatch(hello.session):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'session name "{hello.session[:80]}" must be 1-64 of [A-Za-z0-9._-], not starting with a dot',
        )
    if hello.sender_id and not SENDER_ID.fullmatch(hello.sender_id):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "sender_id must be 16-64 of [A-Za-z0-9_-]")
    if not is_digest(hello.decoder_digest):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f'"{hello.decoder_digest[:80]}" is not a SHA-256 decoder digest'
        )
    if not 0 < hello.decoder.size_bytes <= MAX_MODEL_BYTES:
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"decoder of {hello.decoder.size_bytes} bytes; limit is {MAX_MODEL_BYTES}",
        )


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
