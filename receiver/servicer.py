"""The receiver's gRPC face: messages in, plain session logic, messages out.

Every protobuf conversion goes through latentlink.shared.serde; every rule of
the protocol that is not about the stream itself lives in receiver.session.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from latentlink.receiver.disk_space import DiskSpace
from latentlink.receiver.inbox import DEFAULT_IDLE_TIMEOUT_S, Inbox, Notice
from latentlink.receiver.journal import SessionJournal
from latentlink.receiver.log_text import peer_text
from latentlink.receiver.model_store import DecoderTooCostly, ModelStore
from latentlink.receiver.model_upload import ModelUpload
from latentlink.receiver.output import remove_stale_temporaries
from latentlink.receiver.png_workers import PngWorkers
from latentlink.receiver.session import ReceiverSession, check_request, pick_encoding
from latentlink.shared.model_format import ModelFormatError
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import (
    BUSY_METADATA,
    MAX_BATCH_IMAGES,
    MAX_BATCH_PIXELS,
    MAX_DECODER_ACTIVATIONS,
    MAX_DECODER_MACS,
    MAX_MESSAGE_BYTES,
    MAX_MODEL_BYTES,
    MAX_SESSIONS,
    MODEL_CHUNK_BYTES,
    PROTOCOL_VERSION,
    RECEIVER_METADATA,
    batch_images_limit,
)
from latentlink.shared.serde import (
    KEY_BYTES,
    BatchOutcome,
    CorruptBatch,
    Encoding,
    Limits,
    OutputFormat,
    ProtocolError,
    SessionRequest,
    SessionTerms,
    batch_from_proto,
    coding_tables,
    decodable_encodings,
    durable_messages,
    handshake_to_proto,
    hello_from_proto,
    model_accepted_to_proto,
    outcome_to_proto,
    summary_to_proto,
)

__all__ = ["LIMITS", "LatentLinkServicer", "session_limits"]

log = logging.getLogger(__name__)

LIMITS = Limits(
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch_images=MAX_BATCH_IMAGES,
    max_model_bytes=MAX_MODEL_BYTES,
    max_chunk_bytes=MODEL_CHUNK_BYTES,
    max_decoder_activations=MAX_DECODER_ACTIVATIONS,
    max_decoder_macs=MAX_DECODER_MACS,
    max_batch_pixels=MAX_BATCH_PIXELS,
)


def session_limits(image_shape: tuple[int, ...]) -> Limits:
    """LIMITS for a session of images of this shape: its images per batch (batch_images_limit) too."""
    return replace(LIMITS, max_batch_images=min(LIMITS.max_batch_images, batch_images_limit(tuple(image_shape))))


# How long a reconnecting sender waits for its abandoned stream to finish the batch it is writing.
TAKEOVER_WAIT_S = 30.0
# Decoded batches waiting for the disk at most; beyond it, decoding waits for the oldest write.
MAX_WRITES_QUEUED = 2


class LatentLinkServicer:
    """Serves sender sessions, writing reconstructions under `out_dir`."""

    def __init__(
        self,
        out_dir: Path,
        store: ModelStore,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        output_format: int = OutputFormat.PNG,
        on_session_end: Callable[[dict], None] = lambda summary: None,
        max_sessions: int = MAX_SESSIONS,
        png: PngWorkers | None = None,
        disk: DiskSpace | None = None,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.disk = disk  # looked at before each batch is written, if given
        self.output_format = OutputFormat(output_format)
        self.on_session_end = on_session_end
        self.max_sessions = max_sessions
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if removed := remove_stale_temporaries(self.out_dir):
            log.info("removed %d half-written files left by an earlier run", removed)
        self.store = store
        self.png = png or PngWorkers()
        self.name = ""  # this receiver, as the handshake names it (set once the port is bound)
        self._open_sessions: dict[str, _OpenSession] = {}
        self._lock = threading.Lock()

    def Stream(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext):
        """One sender session (see protos/latentlink.proto): requests arrive as raw bytes, parsed by the inbox."""
        context.set_trailing_metadata((RECEIVER_METADATA,))
        inbox = Inbox(request_iterator, context, self.idle_timeout_s)
        try:
            yield from self._session(inbox, iter(inbox), context)
        except ProtocolError as exc:
            context.abort(getattr(grpc.StatusCode, exc.status), str(exc))

    def _session(self, inbox: Inbox, events: Iterator, context: grpc.ServicerContext):
        request = hello_from_proto(_expect(events, "hello").hello)
        check_request(request)
        encoding = pick_encoding(request)
        mine = _OpenSession(request.sender_id, inbox)
        self._open(request.session, mine, context)
        try:
            yield from self._serve(request, encoding, events, inbox, context)
        finally:
            with self._lock:
                if self._open_sessions.get(request.session) is mine:
                    del self._open_sessions[request.session]
            mine.released.set()

    def _open(self, name: str, mine: _OpenSession, context: grpc.ServicerContext) -> None:
        """Registers a session's stream; the same sender's reconnect takes it over from its abandoned stream."""
        with self._lock:
            holder = self._open_sessions.get(name)
            if holder is None:
                if len(self._open_sessions) >= self.max_sessions:
                    context.set_trailing_metadata((RECEIVER_METADATA, BUSY_METADATA))
                    raise ProtocolError("UNAVAILABLE", f"all {self.max_sessions} session slots are in use")
                self._open_sessions[name] = mine
                return
            if not (mine.sender_id and mine.sender_id == holder.sender_id):
                raise ProtocolError("ALREADY_EXISTS", f'session "{name}" is open in another stream; pick another')
            self._open_sessions[name] = mine
        holder.inbox.take_over()
        # The old stream finishes the batch it is writing; two streams never write one session at once.
        if not holder.released.wait(TAKEOVER_WAIT_S):
            raise ProtocolError("UNAVAILABLE", f'session "{name}": its previous stream is still finishing')

    def _serve(self, request: SessionRequest, encoding: Encoding, events, inbox: Inbox, context):
        peer = f"{context.peer()} [{request.session}]"
        digest = request.decoder_digest
        folder = self.out_dir / request.session
        journal = SessionJournal(self.out_dir, request.session)
        durable = journal.durable_keys()
        has_decoder = self.store.has(digest)
        upload = None if has_decoder else ModelUpload(self.store.folder, digest, request.session, request.decoder_bytes)
        log.info(
            "%s: session for decoder %s (%s), cached=%s, encoding %s, %d images already durable",
            peer,
            digest[:12],
            peer_text(request.model_name),
            has_decoder,
            encoding.label,
            len(durable) // KEY_BYTES,
        )
        yield handshake_to_proto(
            SessionTerms(
                protocol_version=PROTOCOL_VERSION,
                has_decoder=has_decoder,
                encoding=encoding,
                limits=session_limits(request.image_shape),
                session_dir=request.session,
                output_format=self.output_format,
                durable_images=len(durable) // KEY_BYTES,
                model_bytes_held=upload.held if upload else 0,
                receiver=self.name,
            )
        )
        yield from durable_messages(durable)
        if upload is not None:
            yield self._receive_decoder(upload, digest, events, peer)
        try:
            decoder = self.store.decoder(digest)
        except (ModelFormatError, OSError) as exc:
            raise ProtocolError("FAILED_PRECONDITION", f"cached decoder {digest[:12]} is unusable: {exc}") from None
        decoder.warm_up()  # while the handshake travels to the sender and its first batch comes back
        tables = coding_tables(decoder.info.network)
        if encoding not in decodable_encodings(tables is not None, decoder.info.any_size):
            raise ProtocolError(
                "FAILED_PRECONDITION", f"the decoder cannot decode the {encoding.label} encoding its hello asked for"
            )
        session = ReceiverSession(
            request.session, folder, self.output_format, digest, decoder, tables, journal, self.png
        )
        # A batch's PNGs are encoded on the PNG workers from the moment it is decoded; its group-commit write
        # overlaps the decoding of the next batch. Digits: one writer per session (its files never contend for
        # their folder's lock). Photos come one per batch: as many writers as PNG workers.
        writers = self.png.workers if decoder.info.any_size else 1
        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix=f"write-{request.session}") as writer:
            yield from self._serve_batches(session, writer, events, inbox, context, peer, request, encoding)

    def _receive_decoder(self, upload: ModelUpload, digest: str, events, peer: str):
        """Collects the decoder's chunks (resuming a broken upload), verifies and caches it."""
        while True:
            chunk = _expect(events, "model_chunk").model_chunk
            upload.add(chunk.offset, chunk.data)
            if chunk.last:
                break
        data = upload.complete()
        try:
            self.store.add(digest, data)
        except DecoderTooCostly as exc:
            upload.discard()
            raise ProtocolError("RESOURCE_EXHAUSTED", f"decoder refused: {exc}") from None
        except ModelFormatError as exc:
            upload.discard()
            log.warning("%s: rejected decoder transfer: %s", peer, peer_text(exc))
            raise ProtocolError("DATA_LOSS", f"decoder transfer rejected: {exc}") from None
        upload.discard()
        return model_accepted_to_proto(digest, len(data))

    def _serve_batches(self, session: ReceiverSession, writer, events, inbox: Inbox, context, peer, request, encoding):
        """Decodes latent batches as they come and acknowledges each the moment its files are durable."""
        writing: deque[Future] = deque()  # outcomes in the order the batches came
        latent_dim = session.decoder.info.input_shape[-1]
        limits = session_limits(session.decoder.info.output_shape)  # the decoder's images, whatever the hello said
        for event in events:
            if not isinstance(event, Notice):
                kind = event.WhichOneof("kind")
                if kind == "finish":
                    while writing:
                        yield outcome_to_proto(writing.popleft().result())
                    log.info(
                        "%s: session done: encoding=%s written=%d failed=%d latent_bytes=%d",
                        peer,
                        encoding.label,
                        session.written,
                        session.failed,
                        session.bytes_in,
                    )
                    self.on_session_end(session.summary(context.peer(), request.model_name, encoding))
                    yield summary_to_proto(session.written, session.failed)
                    return
                if kind != "latent_batch":
                    raise ProtocolError("INVALID_ARGUMENT", f'unexpected "{kind}" message after the handshake')
                session.bytes_in += event.latent_batch.ByteSize()
                batch = batch_from_proto(
                    event.latent_batch,
                    session.digest,
                    encoding,
                    latent_dim,
                    session.tables,
                    limits.max_batch_pixels,
                    limits.max_batch_images,
                )
                if isinstance(batch, CorruptBatch):
                    writing.append(_done(session.corrupt(batch)))
                else:
                    if self.disk is not None:
                        self.disk.check()
                    writing.append(writer.submit(session.write, session.decode(batch)))
                    writing[-1].add_done_callback(inbox.post)
                while len(writing) > MAX_WRITES_QUEUED:  # decoding must not run far ahead of the disk
                    yield outcome_to_proto(writing.popleft().result())
            while writing and writing[0].done():  # acknowledge, in order, whatever is durable now
                yield outcome_to_proto(writing.popleft().result())
        for pending in writing:
            pending.result()  # what was decoded is still written; the sender resends it after a break
        log.warning("%s: stream ended without finish (%d written, %d failed)", peer, session.written, session.failed)


@dataclass
class _OpenSession:
    """The stream that holds a session now, and when it lets go."""

    sender_id: str
    inbox: Inbox
    released: threading.Event = field(default_factory=threading.Event)


def _done(outcome: BatchOutcome) -> Future:
    future: Future = Future()
    future.set_result(outcome)
    return future


def _expect(events: Iterator, kind: str) -> pb.SenderMessage:
    message = next(events, None)
    if message is None:
        raise ProtocolError("CANCELLED", f"stream ended before {kind}")
    if message.WhichOneof("kind") != kind:
        raise ProtocolError("INVALID_ARGUMENT", f'expected "{kind}", got "{message.WhichOneof("kind")}"')
    return message
