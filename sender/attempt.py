"""One attempt at a session: a single stream, from hello to summary or to the break.

The calling thread reads the receiver's messages; a producer thread encodes
batches (read ahead by another) and sends them while at most a window of
images is unacknowledged. The producer starts with the stream: its first
batches are read and encoded while the handshake and any model upload go on,
and sent once they are done. Every wait is on a condition, an event or a
queue that the other side signals; `close` wakes them all and cancels the call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from latentlink.sender.encode import BatchEncoder, QualityMeter, code_photos, drop_images
from latentlink.sender.read_ahead import LoadedBatch, ReadAhead
from latentlink.sender.report import SendReport
from latentlink.shared.image_io import SourceImage, batch_file_name, output_name
from latentlink.shared.model_format import network_to_bytes
from latentlink.shared.photo_codec import CodedImage, PhotoBatcher
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import (
    MAX_BATCH_IMAGES,
    MAX_BATCH_PIXELS,
    MAX_MESSAGE_BYTES,
    MODEL_CHUNK_BYTES,
    PROTOCOL_VERSION,
    STREAM_METHOD,
)
from latentlink.shared.serde import (
    BatchOutcome,
    Encoding,
    OutputFormat,
    ProtocolError,
    SessionRequest,
    batch_pixels,
    handshake_from_proto,
    hello_to_proto,
    image_keys,
    keys_from_durable,
    latents_to_batch,
    outcome_from_proto,
    parse_receiver_message,
    photo_batch,
    wire_latents,
)

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT_S", "Attempt", "LinkError", "SessionError", "SessionOptions"]

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT_S = 20.0
# Batches in flight at most: enough to keep both ends busy, few enough to bound memory.
UNACKED_BATCHES = 4
# Images of any size read per batch: a few 4 M pixel photos, not 512 of them (each is coded and sent on its own).
PHOTO_READ_IMAGES = 8
# Batches read and decoded ahead of the encoder.
READ_AHEAD_BATCHES = 2
# Decoder upload pieces: small, so that a link that keeps breaking loses little of a resumable upload.
UPLOAD_CHUNK_BYTES = 16 * 1024
_END = object()


class SessionError(RuntimeError):
    """The receiver broke the protocol, or the session cannot go on; not worth a retry."""


class LinkError(Exception):
    """The link corrupted what the receiver said (a checksum failed, images were left unsettled): reconnect."""


class _Stopped(Exception):
    """The attempt was closed while the producer waited."""


@dataclass(frozen=True)
class SessionOptions:
    """What every attempt of a session shares."""

    encoder: BatchEncoder
    offered: list[int]
    metadata: list[tuple[str, str]]
    on_progress: Callable[[int, int], None]  # (images done, wire bytes) since the last call
    batch_size: int
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    min_psnr: float | None = None
    sender_id: str = ""
    read_workers: int = 1  # workers reading and decoding image files (sender/read_ahead.py)


@dataclass
class _Sent:
    names: list[str]
    message: pb.SenderMessage
    resent: bool = False


class Attempt:
    """One stream of a session; `run` raises grpc.RpcError when it breaks and SessionError when it cannot go on."""

    def __init__(
        self,
        channel: grpc.Channel,
        options: SessionOptions,
        report: SendReport,
        quality: QualityMeter,
        first_seq: int,
        on_advance: Callable[[], None] = lambda: None,
    ) -> None:
        self.channel, self.options, self.report, self.quality = channel, options, report, quality
        self.on_advance = on_advance
        self.encoder = options.encoder
        self.next_seq = first_seq
        self.handshake_seen = False
        self.garbled = False  # a message from the receiver did not parse: corrupt in transit
        self.stalled = False  # cancelled by the session for making no progress: the connection is suspect
        self.model_bytes_held = 0  # what the receiver held of the decoder at the handshake
        self.encoding = Encoding.FLOAT32
        self.output_format = OutputFormat.PNG
        self.max_batch_pixels = MAX_BATCH_PIXELS
        self.max_batch_images = MAX_BATCH_IMAGES
        self.max_payload_bytes = MAX_MESSAGE_BYTES // 2
        self.durable: set[bytes] = set()  # keys of the session's images already on the receiver's disk
        self.producer_error: BaseException | None = None
        self._outgoing: queue.SimpleQueue = queue.SimpleQueue()
        self._window = threading.Condition()  # guards in_flight; notified by acks and by close
        self._in_flight: dict[int, _Sent] = {}
        self._in_flight_images = 0
        self._window_images = 0
        self._stopped = threading.Event()
        self._agreed = threading.Event()  # the terms are known and the decoder is in place: latents may go
        self._batch_images = MAX_BATCH_IMAGES  # images per latent batch, as agreed
        self._producer: threading.Thread | None = None
        self._call = None

    def run(self, sources: Sequence[SourceImage]) -> None:
        # Reading and encoding start now, while the stream is set up: the first batch is ready when the receiver is
        # (digits; photos once it has answered: see _produce).
        self._producer = threading.Thread(target=self._produce, args=(sources,), daemon=True, name="encode")
        self._producer.start()
        try:
            self._converse()
        except grpc.RpcError:
            if self.producer_error is not None:  # not worth resuming: the sender's own reading or encoding failed
                raise SessionError(f"encoding failed: {self.producer_error}") from None
            raise
        if self.producer_error is not None:
            raise SessionError(f"encoding failed: {self.producer_error}")
        if self._in_flight:  # a summary with images unacknowledged: something on the way was lost
            raise LinkError(f"the session ended with {self._in_flight_images} images unacknowledged")

    def _converse(self) -> None:
        """Hello, handshake, the decoder if needed, then acknowledgements until the summary."""
        model = self.encoder.model
        decoder_bytes = network_to_bytes(model.decoder.network)
        self._put(
            hello_to_proto(
                SessionRequest(
                    protocol_version=PROTOCOL_VERSION,
                    decoder_digest=model.decoder.digest,
                    image_shape=model.image_shape,
                    latent_dim=model.latent_dim,
                    decoder_bytes=len(decoder_bytes),
                    model_name=model.name,
                    has_entropy_model=self.encoder.tables is not None,
                    encodings=tuple(self.options.offered),
                    session=self.report.session,
                    sender_id=self.options.sender_id,
                )
            )
        )
        stream = self.channel.stream_stream(
            STREAM_METHOD, request_serializer=pb.SenderMessage.SerializeToString, response_deserializer=self._parse
        )
        self._call = call = stream(iter(self._outgoing.get, _END), metadata=self.options.metadata)
        watchdog = threading.Timer(self.options.handshake_timeout_s, call.cancel)
        watchdog.start()
        try:
            terms = handshake_from_proto(self._next("handshake").handshake)
        finally:
            watchdog.cancel()
        self.handshake_seen = True
        self._agree(terms)
        while len(self.durable) < terms.durable_images:  # the receiver's journal: what is already in place
            message = self._next("durable")
            self.report.wire_bytes += _framed(message)
            self.durable |= keys_from_durable(message.durable)
        if not terms.has_decoder:
            self.model_bytes_held = terms.model_bytes_held
            if self.model_bytes_held > len(decoder_bytes):
                raise SessionError(f"receiver holds {self.model_bytes_held} bytes of a smaller decoder")
            chunk = min(UPLOAD_CHUNK_BYTES, terms.limits.max_chunk_bytes or MODEL_CHUNK_BYTES)
            self._upload(decoder_bytes, self.model_bytes_held, chunk)
            self._next("model_accepted")
            self.report.model_bytes = len(decoder_bytes) - self.report.model_bytes_base  # what this run uploaded
            self._advanced()
        self._batch_images = max(1, min(self.options.batch_size, terms.limits.max_batch_images or MAX_BATCH_IMAGES))
        self._window_images = UNACKED_BATCHES * min(self._batch_images, self._read_images())
        self._agreed.set()
        for message in call:
            self.report.wire_bytes += _framed(message)
            kind = message.WhichOneof("kind")
            if kind == "acks":
                try:
                    outcome = outcome_from_proto(message.acks)
                except ProtocolError as exc:
                    raise LinkError(str(exc)) from None
                self._record(outcome)
            elif kind == "summary":
                break
            else:
                raise SessionError(f'receiver sent an unexpected "{kind}" message')
        self._producer.join()

    def close(self) -> None:
        """Ends the attempt: wakes every wait, ends the request stream and cancels the call (idempotent)."""
        self._stopped.set()
        self._agreed.set()  # a producer waiting for the terms wakes, and sees it is stopped
        with self._window:
            self._window.notify_all()
        self._outgoing.put(_END)
        if self._call is not None:
            self._call.cancel()  # an abandoned call must free its session on the receiver now
        if self._producer is not None:
            self._producer.join()

    def cancel(self) -> None:
        """Cancels the call from another thread; `run` then raises grpc.RpcError (CANCELLED)."""
        if self._call is not None:
            self._call.cancel()

    def _advanced(self) -> None:
        """Images or the decoder got further: the retry policy's clock starts again."""
        self.on_advance()

    def _agree(self, terms) -> None:
        if terms.protocol_version != PROTOCOL_VERSION:
            raise SessionError(f"receiver speaks protocol {terms.protocol_version}, this sender {PROTOCOL_VERSION}")
        if terms.encoding not in self.options.offered:
            raise SessionError(f"receiver picked latent encoding {terms.encoding}, which was not offered")
        self.encoding, self.output_format = Encoding(terms.encoding), OutputFormat(terms.output_format)
        self.max_batch_pixels = terms.limits.max_batch_pixels or MAX_BATCH_PIXELS
        self.max_batch_images = terms.limits.max_batch_images or MAX_BATCH_IMAGES
        # Names, shapes and framing take the rest of a message: a photo batch's bitstreams stay under half of it,
        # and so does a batch of digits, names and all (split in halves until it does).
        self.max_payload_bytes = (terms.limits.max_message_bytes or MAX_MESSAGE_BYTES) // 2
        self.report.session_dir = terms.session_dir
        self.report.receiver = terms.receiver
        self.report.encoding = self.encoding.label

    def _parse(self, data: bytes) -> pb.ReceiverMessage:
        try:
            return parse_receiver_message(data)
        except ProtocolError:
            self.garbled = True  # gRPC ends the call with INTERNAL; this says it came from the link
            raise

    def _next(self, kind: str) -> pb.ReceiverMessage:
        message = next(self._call, None)
        if message is None or message.WhichOneof("kind") != kind:
            got = "end of stream" if message is None else f'"{message.WhichOneof("kind")}"'
            raise SessionError(f'expected "{kind}" from the receiver, got {got}')
        return message

    def _put(self, message: pb.SenderMessage) -> None:
        self._outgoing.put(message)

    def _upload(self, data: bytes, start: int, chunk_bytes: int) -> None:
        for offset in range(start, len(data), chunk_bytes):
            piece = data[offset : offset + chunk_bytes]
            self._put(pb.SenderMessage(model_chunk=pb.ModelChunk(offset=offset, data=piece, last=False)))
        # The last chunk is flagged; a resumed upload with nothing left sends just the flag.
        self._put(pb.SenderMessage(model_chunk=pb.ModelChunk(offset=len(data), data=b"", last=True)))
        if self.report.model_bytes_base is None:  # what the receiver held before this run started uploading
            self.report.model_bytes_base = start

    def _read_images(self) -> int:
        """Images read per batch: photos a few at a time, since 512 of them could fill the memory."""
        return min(self.options.batch_size, PHOTO_READ_IMAGES) if self.encoder.any_size else self.options.batch_size

    def _produce(self, sources: Sequence[SourceImage]) -> None:
        if self.encoder.any_size:  # photos, large files, are read once a receiver answers: a busy one is asked again
            self._agreed.wait()
            if self._stopped.is_set():
                return
        size = self._read_images()
        batches = [sources[first : first + size] for first in range(0, len(sources), size)]
        # reading and PNG decoding overlap the encoding, on as many cores as there are workers
        reader = ReadAhead(batches, READ_AHEAD_BATCHES, self.options.read_workers, self.encoder.any_size)
        try:
            for loaded in reader:
                # Digits are encoded before the terms are known (they do not depend on them); photos after.
                vectors = self.encoder.encode(loaded.pixels) if loaded.names and not self.encoder.any_size else None
                self._agreed.wait()
                if self._stopped.is_set():
                    return
                self._send_batch(loaded, vectors)
        except _Stopped:
            return
        except Exception as exc:  # a crash ends the session, not hangs it; what was sent is still acknowledged
            log.exception("encoding failed")
            self.producer_error = exc
        finally:
            reader.close()
        self._agreed.wait()  # the finish follows the hello and the decoder (nothing may have been read)
        if self._stopped.is_set():
            return
        finish = pb.SenderMessage(finish=pb.Finish(images_sent=self.next_seq))
        self.report.wire_bytes += _framed(finish)
        self._put(finish)

    def _send_batch(self, loaded: LoadedBatch, vectors: np.ndarray | None) -> None:
        self._fail(loaded.failed)
        self.report.record_read(loaded.names, loaded.input_bytes)
        if self.encoder.any_size:
            self._send_photos(loaded)
            return
        step = self._batch_images  # a receiver may take fewer images per batch than were read
        for first in range(0, len(loaded.names), step):
            part = slice(first, first + step)
            self._send_digits(loaded.names[part], loaded.pixels[part], vectors[part])

    def _send_digits(self, names: list[str], pixels: np.ndarray, vectors: np.ndarray) -> None:
        latents = wire_latents(self.encoding, vectors)  # what the receiver will decode
        min_psnr = self.options.min_psnr
        measured = self.quality.rows(len(names)) if min_psnr is None else None
        if min_psnr is not None:  # the predicted quality decides what is sent
            reconstructed = self.encoder.reconstruct(latents)
            rejected = self._fail(self.quality.gate(names, pixels, reconstructed, min_psnr))
            names, latents = drop_images(names, latents, rejected)
        self._emit_digits(*drop_images(names, latents, self._in_place(names, latents)))
        if measured is not None and measured.size:  # quality measured, not gated: once the batch is on its way
            reconstructed = self.encoder.reconstruct(latents[measured])
            self.quality.add([names[i] for i in measured], pixels[measured], reconstructed)

    def _emit_digits(self, names: list[str], latents: np.ndarray) -> None:
        if not names:
            return
        model = self.encoder.model
        batch = latents_to_batch(
            model.decoder.digest, self.encoding, self.next_seq, names, model.image_shape, latents, self.encoder.tables
        )
        if batch.ByteSize() > self.max_payload_bytes and len(names) > 1:  # long names, wide latents: in halves
            half = len(names) // 2
            self._emit_digits(names[:half], latents[:half])
            self._emit_digits(names[half:], latents[half:])
            return
        self._emit(names, batch)

    def _send_photos(self, loaded: LoadedBatch) -> None:
        """Images of any size: coded one by one, sent in batches within the receiver's pixel and message limits."""
        batcher = PhotoBatcher(self.max_batch_pixels, self.max_payload_bytes, self.max_batch_images)
        options = self.options
        for item in code_photos(
            self.encoder,
            loaded.names,
            loaded.pixels,
            self.quality,
            options.min_psnr,
            self.max_batch_pixels,
            self.max_payload_bytes,
        ):
            if not isinstance(item, CodedImage):
                self._fail(dict([item]))
            elif not self._in_place([item.name], [item.latents.vector]) and (full := batcher.add(item)):
                self._emit_photos(full)
        if last := batcher.flush():
            self._emit_photos(last)

    def _emit_photos(self, images: list[CodedImage]) -> None:
        model = self.encoder.model
        batch = photo_batch(model.decoder.digest, self.next_seq, images, model.latent_dim)
        self._emit([image.name for image in images], batch)

    def _fail(self, failures: dict[str, str]) -> dict[str, str]:
        """Records images that will not be sent, and why; returns them."""
        if failures:
            self.report.failed.update(failures)
            self.options.on_progress(len(failures), 0)
        return failures

    def _in_place(self, names: list[str], vectors) -> set[str]:
        """The images whose name and latents are on the receiver's disk already (reported written, not sent)."""
        if not self.durable or not names:
            return set()
        report = self.report
        keys = image_keys(self.encoder.model.decoder.digest, names, vectors)
        in_place = {name for name, key in zip(names, keys, strict=True) if key in self.durable}
        found = list(in_place)
        report.record_written(found, [f"{report.session_dir}/{output_name(name)}" for name in found])
        report.already_in_place += sum(name not in report.sent_names for name in in_place)  # not acks lost
        self.options.on_progress(len(in_place), 0)
        if in_place:
            self._advanced()
        return in_place

    def _emit(self, names: list[str], batch: pb.LatentBatch) -> None:
        """Sends a batch of images numbered from `next_seq`, within the window of unacknowledged images."""
        report = self.report
        first_seq, self.next_seq = self.next_seq, self.next_seq + len(names)
        message = pb.SenderMessage(latent_batch=batch)
        with self._window:  # flow control: memory stays bounded however slow the receiver
            while self._in_flight and self._in_flight_images + len(names) > self._window_images:
                if self._stopped.is_set():
                    raise _Stopped
                self._window.wait()
            if self._stopped.is_set():
                raise _Stopped
            self._in_flight[first_seq] = _Sent(names, message)
            self._in_flight_images += len(names)
        report.payload_bytes += len(batch.payload) + 8 * len(batch.values)
        report.pixels_sent += batch_pixels(batch)
        report.sent += len(names)
        report.sent_names.update(names)
        report.wire_bytes += _framed(message)
        self._put(message)
        self.options.on_progress(0, _framed(message))
        if report.first_sent_at is None:
            report.first_sent_at = time.time()

    def _record(self, outcome: BatchOutcome) -> None:
        with self._window:
            sent = self._in_flight.get(outcome.first_seq)
            if sent is None:
                log.warning("acknowledgement for unknown images %d.. ignored", outcome.first_seq)
                return
            if outcome.resend and not sent.resent:  # corrupt on the way: the receiver asks once more
                sent.resent = True
                self.report.resent_batches += 1
                self.report.wire_bytes += _framed(sent.message)
                self._put(sent.message)
                return
            del self._in_flight[outcome.first_seq]
            self._in_flight_images -= len(sent.names)
            self._window.notify_all()
        report = self.report
        written = sent.names
        if outcome.failures:
            written = []
            for seq, name in enumerate(sent.names, outcome.first_seq):
                if seq in outcome.failures:
                    report.failed[name] = outcome.failures[seq] or "failed on the receiver"
                else:
                    written.append(name)
        if self.output_format == OutputFormat.NPZ:  # one file for the batch
            report.record_written(written, f"{report.session_dir}/{batch_file_name(outcome.first_seq)}")
        else:
            report.record_written(written, [f"{report.session_dir}/{output_name(name)}" for name in written])
        if len(outcome.failures) < len(sent.names):
            self._advanced()
            report.first_written_at = report.first_written_at or time.time()
        self.options.on_progress(len(sent.names), 0)


def _framed(message) -> int:
    """Bytes a message takes in a gRPC stream: 5-byte length prefix plus the protobuf."""
    return 5 + message.ByteSize()
