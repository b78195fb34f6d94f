"""One sender session over a bidirectional stream: hello, model upload if needed, latents, acks."""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import numpy as np

from latentlink.sender.channel import open_channel
from latentlink.sender.encode import BatchEncoder, QualityMeter, below_min_psnr, out_of_domain_psnr
from latentlink.shared.auth import bearer_metadata
from latentlink.shared.image_io import ImageError, SourceImage, batch_file_name, output_name
from latentlink.shared.latent_codec import latents_to_batch, supported_encodings, wire_latents
from latentlink.shared.metrics import Quality
from latentlink.shared.model_format import network_to_bytes
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import latentlink_pb2_grpc
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, MODEL_CHUNK_BYTES, PROTOCOL_VERSION
from latentlink.shared.queues import put_while

__all__ = ["SendReport", "SessionError", "new_session_name", "send_images"]

log = logging.getLogger(__name__)
_END = object()
DEFAULT_RETRY_S = 60.0
# Batches in flight at most: enough to keep both ends busy, few enough to bound memory.
UNACKED_BATCHES = 4
# Batches read and decoded ahead of the encoder.
READ_AHEAD_BATCHES = 2
T = TypeVar("T")
# Statuses of a broken or restarting receiver, worth a reconnect once a session has started.
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INTERNAL}
)


# What gRPC says when a server's maximum_concurrent_rpcs are taken.
FULL_RECEIVER = "Concurrent RPC limit exceeded"


class SessionError(RuntimeError):
    """The session could not run or was cut off; the message says why and what to do."""


@dataclass
class SendReport:
    """What happened to every image the sender read."""

    images: int = 0
    sent: int = 0  # images whose latents went out
    written: dict[str, str] = field(default_factory=dict)  # name -> path on the receiver
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason
    model_bytes: int = 0
    payload_bytes: int = 0  # the latents alone (bitstream or raw values)
    wire_bytes: int = 0  # everything both ways after the handshake, gRPC message framing included
    input_bytes: int = 0
    encoding: str = ""
    session: str = ""
    session_dir: str = ""  # where the receiver writes, relative to its output folder
    reconnects: int = 0
    expected_quality: Quality | None = None
    quality_images: int = 0  # how many images the expected quality was measured on
    out_of_domain: dict[str, float] = field(default_factory=dict)  # name -> predicted PSNR, far under the model's
    skipped: dict[str, str] = field(default_factory=dict)  # files a folder search left out, and why
    elapsed_s: float = 0.0
    first_sent_at: float | None = None  # epoch seconds when the first latents went on the wire
    first_written_at: float | None = None  # ... and when the receiver first acknowledged images written
    streams: list[SendReport] = field(default_factory=list)  # per parallel session, when there were several
    error: str | None = None  # why the session ended early, if it did

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed and len(self.written) == self.images


def send_images(
    target: str,
    sources: Sequence[SourceImage],
    encoder: BatchEncoder,
    batch_size: int = DEFAULT_BATCH_IMAGES,
    handshake_timeout: float = 20.0,
    on_progress: Callable[[int, int], None] = lambda images, wire_bytes: None,
    encodings: Sequence[int] | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    session: str | None = None,
    retry_for: float = DEFAULT_RETRY_S,
    channel: grpc.Channel | None = None,
    min_psnr: float | None = None,
) -> SendReport:
    """Streams `sources` to the receiver at `target`; never raises for per-image problems.

    `encodings` are offered in order of preference (default: the most compact the model allows).
    The images land in the receiver's folder for `session` (default: a fresh, unique name). If the
    stream breaks after a handshake, the sender reconnects with backoff for up to `retry_for`
    seconds and resends only the images not yet acknowledged, under the same session. A given
    `channel` is used (and left open) instead of opening one to `target`. With `min_psnr`, every
    image is decoded locally first and those predicted below it fail instead of being sent.
    """
    report = SendReport(images=len(sources), input_bytes=sum(s.size_bytes for s in sources))
    report.session = session or new_session_name()
    start = time.perf_counter()
    own_channel = channel is None
    channel = channel or open_channel(target, credentials)
    quality = QualityMeter()
    options = _Options(
        encoder,
        list(encodings or supported_encodings(encoder.tables)),
        bearer_metadata(token),
        on_progress,
        min_psnr,
        sender_id=secrets.token_urlsafe(18),  # the same on every reconnect: lets it take over its old stream
    )
    stub = latentlink_pb2_grpc.LatentLinkStub(channel)
    next_seq, backoff, give_up_at = 0, 0.25, None
    try:
        while True:
            remaining = [s for s in sources if s.name not in report.written and s.name not in report.failed]
            attempt = _Session(stub, options, report, quality, next_seq)
            try:
                attempt.run(remaining, batch_size, handshake_timeout)
                break
            except grpc.RpcError as exc:
                if attempt.handshake_seen:  # progress was possible: the retry budget starts afresh
                    backoff, give_up_at = 0.25, None
                resumable = (report.session_dir and exc.code() in RETRYABLE) or _receiver_full(exc)
                give_up_at = give_up_at or time.monotonic() + retry_for
                if not resumable or time.monotonic() + backoff > give_up_at:
                    report.error = _explain(exc, target, attempt.handshake_seen, credentials is not None)
                    break
                if _receiver_full(exc):
                    log.warning("receiver is serving its maximum of sessions; trying again in %.1f s", backoff)
                else:
                    log.warning("stream broke (%s); resuming in %.1f s", exc.code().name, backoff)
                    report.reconnects += 1
            except SessionError as exc:
                report.error = str(exc)
                break
            finally:
                attempt.stop.set()
                if attempt.call is not None:
                    attempt.call.cancel()  # an abandoned call must free its session on the receiver now
                if attempt.producer is not None:
                    attempt.producer.join()
                next_seq = attempt.next_seq
            time.sleep(backoff)
            backoff = min(2 * backoff, 5.0)
    finally:
        if own_channel:
            channel.close()
    reason = f"not delivered: {report.error or 'the receiver did not acknowledge it'}"
    for source in sources:
        if source.name not in report.written:
            report.failed.setdefault(source.name, reason)
    report.elapsed_s = time.perf_counter() - start
    report.expected_quality = quality.result()
    report.quality_images = quality.sampled
    report.out_of_domain = quality.below(out_of_domain_psnr(encoder.model))
    return report


@dataclass(frozen=True)
class _Options:
    """What every attempt of a session shares."""

    encoder: BatchEncoder
    offered: list[int]
    metadata: list[tuple[str, str]]
    on_progress: Callable[[int, int], None]  # (images done, wire bytes) since the last call
    min_psnr: float | None = None
    sender_id: str = ""


class _Session:
    """One attempt: a single stream, from hello to summary or to the break."""

    def __init__(self, stub, options: _Options, report: SendReport, quality: QualityMeter, first_seq: int) -> None:
        self.stub, self.report, self.quality = stub, report, quality
        self.encoder, self.offered, self.metadata = options.encoder, options.offered, options.metadata
        self.on_progress, self.min_psnr, self.sender_id = options.on_progress, options.min_psnr, options.sender_id
        self.call: grpc.Future | None = None
        self.encoding = pb.LATENT_ENCODING_UNSPECIFIED
        self.output_format = pb.OUTPUT_FORMAT_PNG
        self.next_seq = first_seq
        self.outgoing: queue.Queue = queue.Queue(maxsize=8)
        self.stop = threading.Event()
        self.pending: dict[int, str] = {}  # seq -> name, sent and not yet acknowledged
        self.pending_lock = threading.Condition()  # notified as acks free room in the window
        self.window = 0  # most images sent and not yet acknowledged; set once the batch size is known
        self.handshake_seen = False
        self.producer_error: BaseException | None = None
        self.producer: threading.Thread | None = None

    def _requests(self) -> Iterator[pb.SenderMessage]:
        # Polls so that gRPC's request thread ends with the session, even if _END never comes.
        while not self.stop.is_set():
            try:
                message = self.outgoing.get(timeout=0.2)
            except queue.Empty:
                continue
            if message is _END:
                return
            yield message

    def _put(self, message) -> None:
        if not put_while(self.outgoing, message, lambda: not self.stop.is_set()):
            raise SessionError("session stopped")

    def run(self, sources: Sequence[SourceImage], batch_size: int, handshake_timeout: float) -> None:
        model = self.encoder.model
        decoder_bytes = network_to_bytes(model.decoder.network)
        self._put(
            pb.SenderMessage(
                hello=pb.Hello(
                    protocol_version=PROTOCOL_VERSION,
                    decoder_digest=model.decoder.digest,
                    decoder=pb.DecoderSummary(
                        image_shape=model.image_shape,
                        latent_dim=model.latent_dim,
                        size_bytes=len(decoder_bytes),
                        model_name=model.name,
                        has_entropy_model=self.encoder.tables is not None,
                    ),
                    encodings=self.offered,
                    session=self.report.session,
                    sender_id=self.sender_id,
                )
            )
        )
        call = self.stub.Stream(self._requests(), metadata=self.metadata)
        self.call = call
        watchdog = threading.Timer(handshake_timeout, call.cancel)
        watchdog.start()
        try:
            handshake = _next(call, "handshake").handshake
        finally:
            watchdog.cancel()
        self.handshake_seen = True
        if handshake.protocol_version != PROTOCOL_VERSION:
            raise SessionError(f"receiver speaks protocol {handshake.protocol_version}, this sender {PROTOCOL_VERSION}")
        if handshake.encoding not in self.offered:
            raise SessionError(f"receiver picked latent encoding {handshake.encoding}, which was not offered")
        self.encoding = handshake.encoding
        self.report.session_dir = handshake.session_dir
        self.output_format = handshake.output_format
        self.report.encoding = pb.LatentEncoding.Name(handshake.encoding).removeprefix("LATENT_ENCODING_").lower()
        if not handshake.has_decoder:
            self._upload(decoder_bytes, min(MODEL_CHUNK_BYTES, handshake.limits.max_chunk_bytes or MODEL_CHUNK_BYTES))
            _next(call, "model_accepted")
        batch_size = max(1, min(batch_size, handshake.limits.max_batch_images or batch_size))
        self.window = UNACKED_BATCHES * batch_size
        producer = threading.Thread(target=self._produce, args=(sources, batch_size), daemon=True, name="encode")
        self.producer = producer
        producer.start()
        for message in call:
            self.report.wire_bytes += _framed(message)
            kind = message.WhichOneof("kind")
            if kind == "acks":
                self._record(message.acks)
            elif kind == "summary":
                break
            else:
                raise SessionError(f'receiver sent an unexpected "{kind}" message')
        producer.join()
        if self.producer_error is not None:
            raise SessionError(f"encoding failed: {self.producer_error}")

    def _upload(self, data: bytes, chunk_bytes: int) -> None:
        for offset in range(0, len(data), chunk_bytes):
            piece = data[offset : offset + chunk_bytes]
            last = offset + chunk_bytes >= len(data)
            self._put(pb.SenderMessage(model_chunk=pb.ModelChunk(offset=offset, data=piece, last=last)))
        self.report.model_bytes = len(data)

    def _produce(self, sources: Sequence[SourceImage], batch_size: int) -> None:
        try:
            batches = (sources[first : first + batch_size] for first in range(0, len(sources), batch_size))
            # Reading and PNG decoding of the next batches overlap the encoding of this one.
            for loaded in _prefetch(map(load_batch, batches), READ_AHEAD_BATCHES, self.stop):
                self._send_batch(loaded)
            finish = pb.SenderMessage(finish=pb.Finish(images_sent=self.next_seq))
            self.report.wire_bytes += _framed(finish)
            self._put(finish)
        except SessionError:
            return
        except Exception as exc:  # any crash must end the session, not hang it
            log.exception("encoding failed")
            self.producer_error = exc
            self.call.cancel()
        finally:
            try:
                self.outgoing.put_nowait(_END)
            except queue.Full:
                pass

    def _send_batch(self, loaded: LoadedBatch) -> None:
        self.report.failed.update(loaded.failed)
        self.on_progress(len(loaded.failed), 0)
        names, pixels = loaded.names, loaded.pixels
        if not names:
            return
        latents = self.encoder.encode(pixels)
        if self.min_psnr is not None or self.quality.wants(len(names)):
            # Predict quality from exactly what the receiver will decode (float16 rounds).
            psnr = self.quality.add(names, pixels, self.encoder.reconstruct(wire_latents(self.encoding, latents)))
            if self.min_psnr is not None and (rejected := below_min_psnr(names, psnr, self.min_psnr)):
                self.quality.discard(list(rejected))
                self.report.failed.update(rejected)
                self.on_progress(len(rejected), 0)
                keep = np.array([name not in rejected for name in names])
                names, pixels, latents = [n for n in names if n not in rejected], pixels[keep], latents[keep]
                if not names:
                    return
        first_seq, self.next_seq = self.next_seq, self.next_seq + len(names)
        model = self.encoder.model
        batch_message = latents_to_batch(
            model.decoder.digest, self.encoding, first_seq, names, model.image_shape, latents, self.encoder.tables
        )
        message = pb.SenderMessage(latent_batch=batch_message)
        with self.pending_lock:
            # Flow control: memory stays bounded however large the folder and however slow the receiver.
            while len(self.pending) + len(names) > self.window and self.pending:
                if self.stop.is_set():
                    raise SessionError("session stopped")
                self.pending_lock.wait(timeout=0.2)
            self.pending.update(zip(range(first_seq, first_seq + len(names)), names, strict=True))
        self.report.payload_bytes += len(batch_message.payload) + 8 * len(batch_message.values)
        self.report.sent += len(names)
        self.report.wire_bytes += _framed(message)
        self._put(message)
        self.on_progress(0, _framed(message))
        if self.report.first_sent_at is None:
            self.report.first_sent_at = time.time()

    def _record(self, acks: pb.AckBatch) -> None:
        failures = {f.seq: f.error for f in acks.failures}
        with self.pending_lock:
            names = {seq: self.pending.pop(seq, None) for seq in range(acks.first_seq, acks.first_seq + acks.count)}
            self.pending_lock.notify_all()
        if self.report.first_written_at is None and len(acks.failures) < acks.count:
            self.report.first_written_at = time.time()
        npz = self.output_format == pb.OUTPUT_FORMAT_NPZ
        for seq, name in names.items():
            stored_as = batch_file_name(acks.first_seq) if npz else output_name(name)
            if name is None:
                log.warning("acknowledgement for unknown image %d ignored", seq)
            elif seq in failures:
                self.report.failed[name] = failures[seq] or "failed on the receiver"
            else:
                self.report.written[name] = f"{self.report.session_dir}/{stored_as}"
        self.on_progress(acks.count, 0)


@dataclass(frozen=True)
class LoadedBatch:
    names: list[str]
    pixels: np.ndarray | None  # (len(names), height, width) uint8
    failed: dict[str, str]  # name -> why it could not be read


def load_batch(batch: Sequence[SourceImage]) -> LoadedBatch:
    """Reads a batch of images; unreadable ones become failures."""
    images, names, failed = [], [], {}
    for source in batch:
        try:
            images.append(source.load())
            names.append(source.name)
        except ImageError as exc:
            failed[source.name] = str(exc)
    return LoadedBatch(names, np.stack(images) if images else None, failed)


def _prefetch(items: Iterator[T], depth: int, stop: threading.Event) -> Iterator[T]:
    """Yields `items`, computed up to `depth` ahead by a background thread; its errors are re-raised here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def offer(entry: tuple) -> bool:
        return put_while(ready, entry, lambda: not stop.is_set())

    def fill() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as exc:  # handed to the consumer, which ends the session
            offer((_END, exc))

    threading.Thread(target=fill, daemon=True, name="read").start()
    while not stop.is_set():
        try:
            item, error = ready.get(timeout=0.2)
        except queue.Empty:
            continue
        if error is not None:
            raise error
        if item is _END:
            return
        yield item
    raise SessionError("session stopped")


def new_session_name(label: str = "session") -> str:
    """A readable, unique session name: label, UTC time and a random suffix."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:32] or "session"
    return f"{label}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _receiver_full(exc: grpc.RpcError) -> bool:
    """True when a receiver refused the call for having its maximum of sessions open (worth waiting for)."""
    return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and FULL_RECEIVER in (exc.details() or "")


def _framed(message) -> int:
    """Bytes a message takes in a gRPC stream: 5-byte length prefix plus the protobuf."""
    return 5 + message.ByteSize()


def _next(call, kind: str) -> pb.ReceiverMessage:
    message = next(call, None)
    if message is None or message.WhichOneof("kind") != kind:
        got = "end of stream" if message is None else f'"{message.WhichOneof("kind")}"'
        raise SessionError(f'expected "{kind}" from the receiver, got {got}')
    return message


def _explain(exc: grpc.RpcError, target: str, handshake_seen: bool, tls: bool) -> str:
    code, details = exc.code(), exc.details() or ""
    if not handshake_seen and ("handshake failed" in details.lower() or "ssl" in details.lower()):
        return f"TLS handshake with {target} failed ({details}); check --tls-ca / --tls-cert / --tls-key"
    if code == grpc.StatusCode.UNAVAILABLE and not handshake_seen:
        hint = "" if tls else "; if it uses TLS, pass --tls-ca"
        return f"cannot reach a receiver at {target} ({details}); is `receiver --listen` running there{hint}?"
    if _receiver_full(exc):
        return f"{target} kept all its session slots busy until --retry-for ran out; try later or add receivers"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{target} refused the token: {details}"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{target} is not a latentlink receiver (it does not implement the stream)"
    if code == grpc.StatusCode.CANCELLED and not handshake_seen:
        return f"no handshake from {target} in time; is it a latentlink receiver?"
    return f"receiver ended the session: {code.name}: {details}"
