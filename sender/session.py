"""A sender session and its retry policy: attempts until every image's fate is known, or progress stops."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from latentlink.sender.attempt import DEFAULT_HANDSHAKE_TIMEOUT_S, Attempt, LinkError, SessionError, SessionOptions
from latentlink.sender.channel import CONNECT_WAIT_S, connected, open_channel
from latentlink.sender.encode import BatchEncoder, QualityMeter, out_of_domain_psnr
from latentlink.sender.report import SendReport, StreamFailure
from latentlink.shared.auth import bearer_metadata
from latentlink.shared.image_io import SourceImage
from latentlink.shared.protocol import (
    BUSY_METADATA,
    DEFAULT_BATCH_IMAGES,
    PROXY_GATEWAY,
    RECEIVER_METADATA,
    SESSION_HEADER,
)
from latentlink.shared.serde import supported_encodings

__all__ = ["DEFAULT_RETRY_S", "new_session_name", "send_images"]

log = logging.getLogger(__name__)

DEFAULT_RETRY_S = 60.0
_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 0.25, 5.0
# Statuses a receiver ends a stream with that are worth a reconnect once a session has started. Any
# status without the receiver's trailers was made up by gRPC on our side: the link failed, also worth one.
# What our own gRPC reports when the link garbles a frame (e.g. "Failed parsing HTTP/2"), even before the
# handshake: a connection that could not be made is UNAVAILABLE instead, and stays a reason to give up.
GARBLED = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
STALL_FRACTION = 3  # an attempt without progress for this part of --retry-for is dropped for a fresh connection
# How gRPC core's HTTP/2 transport words a stream it tore down itself ("Stream removed (Illegal header
# key ...)", "... (Failed parsing HTTP/2 ...)"): the link's fault even when some of the receiver's
# trailers got through, e.g. a flipped byte in the trailer block.
TRANSPORT_REMOVED = "Stream removed"


def send_images(
    target: str,
    sources: Sequence[SourceImage],
    encoder: BatchEncoder,
    batch_size: int = DEFAULT_BATCH_IMAGES,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
    on_progress: Callable[[int, int], None] = lambda images, wire_bytes: None,
    encodings: Sequence[int] | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    session: str | None = None,
    retry_for: float = DEFAULT_RETRY_S,
    channel: grpc.Channel | None = None,
    min_psnr: float | None = None,
    read_workers: int = 1,
    opened: grpc.Channel | None = None,
) -> SendReport:
    """Streams `sources` to the receiver at `target`; never raises for per-image problems.

    `encodings` are offered in order of preference (default: the most compact the model allows).
    The images land in the receiver's folder for `session` (default: a fresh, unique name); those
    already there from an earlier run (same name, same latents) are not sent again. If the stream
    breaks after a handshake, the sender reconnects with backoff and resumes (images, and a
    decoder upload, from where the receiver stands) until no progress was made for `retry_for`
    seconds. A given `channel` is used (and left open); an `opened` one (to `target`, connecting since
    channel.start_connecting) is taken over as if this had opened it. With `min_psnr`, every image is decoded
    locally first and those predicted below it fail instead of being sent. `read_workers` workers
    read and decode the image files (sender/read_ahead.py says which kind).
    """
    report = SendReport(images=len(sources))
    report.session = session or new_session_name()
    start = time.perf_counter()
    own_channel = channel is None
    channel = channel or opened or open_channel(target, credentials)
    quality = QualityMeter()
    options = SessionOptions(
        encoder=encoder,
        offered=list(encodings or supported_encodings(encoder.tables)),
        metadata=[*bearer_metadata(token), (SESSION_HEADER, report.session)],  # a proxy routes on the session
        on_progress=on_progress,
        batch_size=batch_size,
        handshake_timeout_s=handshake_timeout,
        min_psnr=min_psnr,
        read_workers=read_workers,
        sender_id=secrets.token_urlsafe(18),  # the same on every reconnect: lets it take over its old stream
    )
    next_seq, backoff, last_progress, held = 0, _FIRST_BACKOFF_S, time.monotonic(), 0
    waited = not own_channel  # for a first connection (a given channel was waited for by its owner)
    watchdog = _ProgressWatchdog(retry_for)
    try:
        while True:
            remaining = [s for s in sources if s.name not in report.written and s.name not in report.failed]
            attempt = Attempt(channel, options, report, quality, next_seq, on_advance=watchdog.advance)
            watchdog.watch(attempt)
            try:
                attempt.run(remaining)
                break
            except (grpc.RpcError, LinkError) as exc:  # the stream broke: resume while the session makes progress
                if attempt.model_bytes_held > held:  # the receiver kept more of the decoder than last time
                    watchdog.advance()
                held = max(held, attempt.model_bytes_held)
                if watchdog.last_advance > last_progress:
                    last_progress, backoff = watchdog.last_advance, _FIRST_BACKOFF_S
                failure = _failure(exc, report)
                if failure.status == "UNAVAILABLE" and not (failure.reached or failure.busy or waited):
                    waited = True  # nothing answered yet: perhaps a receiver starting with this sender, waited for once
                    if connected(channel, min(handshake_timeout, CONNECT_WAIT_S)):
                        continue
                late = time.monotonic() + backoff - last_progress > retry_for
                if late or not _worth_retrying(exc, failure, attempt):
                    report.failure = failure
                    break
                if failure.busy:
                    log.warning("receiver is serving its maximum of sessions; trying again in %.1f s", backoff)
                else:
                    log.warning("stream broke (%s); resuming in %.1f s", failure, backoff)
                    report.reconnects += 1
            except SessionError as exc:
                report.failure = StreamFailure("PROTOCOL", str(exc), attempt.handshake_seen)
                break
            finally:
                attempt.close()
                next_seq = attempt.next_seq
            if attempt.stalled and own_channel:  # a stalled connection may stay stalled: open a fresh one
                channel.close()
                channel = open_channel(target, credentials)
            time.sleep(backoff)
            backoff = min(2 * backoff, _MAX_BACKOFF_S)
    finally:
        watchdog.stop()
        if own_channel:
            channel.close()
    error = report.error or "the receiver did not acknowledge it"
    unconfirmed = (
        f"unconfirmed: sent, but no acknowledgement came back ({error}); it may be on the receiver's disk: "
        f"send again with --session {report.session} to settle it (what is in place is not sent twice)"
    )
    for source in sources:
        if source.name not in report.written:
            in_doubt = source.name in report.sent_names
            report.failed.setdefault(source.name, unconfirmed if in_doubt else f"not delivered: {error}")
    report.elapsed_s = time.perf_counter() - start
    report.expected_quality = quality.result()
    report.quality_images = quality.sampled
    report.out_of_domain = quality.below(out_of_domain_psnr(encoder.model))
    return report


class _ProgressWatchdog:
    """Cancels a running attempt that stopped getting further: the link stalled without breaking.

    An attempt past its handshake gets `retry_for / STALL_FRACTION` seconds without progress, then is
    marked `stalled` and cancelled, so that the session can try a fresh connection well within
    `retry_for` (a corrupted flow-control frame, say, can stall a connection whose pings still
    answer). One before its handshake gets all of `retry_for`, counted from the last progress.
    """

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for
        self.last_advance = time.monotonic()
        self._attempt: Attempt | None = None
        self._since = self.last_advance
        self._changed = threading.Condition()
        self._stopped = False
        threading.Thread(target=self._run, daemon=True, name="progress-watchdog").start()

    def watch(self, attempt: Attempt) -> None:
        with self._changed:
            self._attempt, self._since = attempt, time.monotonic()
            self._changed.notify()

    def advance(self) -> None:
        with self._changed:
            self.last_advance = time.monotonic()
            self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def _deadline(self) -> float:
        if self._attempt is not None and self._attempt.handshake_seen:
            return max(self.last_advance, self._since) + self.retry_for / STALL_FRACTION
        return self.last_advance + self.retry_for

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                left = self._deadline() - time.monotonic()
                if left <= 0 and self._attempt is not None:
                    log.warning("no progress for %.0f s: giving the stream up", time.monotonic() - self.last_advance)
                    self._attempt.stalled = True
                    self._attempt.cancel()
                    self._attempt = None
                # woken by every change; a handshake is not one, so look again at least once a second
                self._changed.wait(min(left, 1.0) if left > 0 else None)


def new_session_name(label: str = "session") -> str:
    """A readable, unique session name: label, UTC time and a random suffix."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:32] or "session"
    return f"{label}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _failure(exc: grpc.RpcError | LinkError, report: SendReport) -> StreamFailure:
    """What ended an attempt, as the report keeps it."""
    if isinstance(exc, LinkError):  # detected by us, not by gRPC
        return StreamFailure("DATA_LOSS", str(exc), reached=True)
    busy = exc.code() == grpc.StatusCode.UNAVAILABLE and BUSY_METADATA in tuple(exc.trailing_metadata() or ())
    return StreamFailure(exc.code().name, exc.details() or "", bool(report.session_dir), busy)


def _worth_retrying(exc: grpc.RpcError | LinkError, failure: StreamFailure, attempt: Attempt) -> bool:
    if isinstance(exc, LinkError) or failure.busy:  # a busy receiver is waited for, even before any handshake
        return True
    made_up_here = RECEIVER_METADATA not in tuple(exc.trailing_metadata() or ()) or (exc.details() or "").startswith(
        TRANSPORT_REMOVED
    )
    if made_up_here and PROXY_GATEWAY.search(exc.details() or ""):
        return True
    if not failure.reached and not (made_up_here and exc.code() in GARBLED):
        return False  # never reached a receiver: a wrong target, TLS or token is not fixed by waiting
    if attempt.garbled or attempt.stalled or made_up_here:
        return True  # our own gRPC made the status up (the link broke or garbled a frame), not the receiver
    return exc.code() in RETRYABLE  # the receiver's own statuses: INTERNAL or UNKNOWN there is a bug, not retried
