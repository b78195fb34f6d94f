"""Which broken streams the sender tries again: the link's faults yes, a target that is not there no."""

from __future__ import annotations

import time

import grpc
import pytest

from latentlink.sender.report import SendReport
from latentlink.sender.session import STALL_FRACTION, _failure, _ProgressWatchdog, _worth_retrying
from latentlink.shared.protocol import RECEIVER_METADATA


class _Broken(grpc.RpcError):
    """A status as our own gRPC reports it: no trailer from a receiver unless `trailers` says so."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return self._trailers


class _Attempt:
    garbled = stalled = False


@pytest.mark.parametrize(
    ("code", "details", "retried"),
    [
        # A flipped byte in an HTTP/2 frame header before the handshake (seen in CI, test_faults): the link's fault.
        (grpc.StatusCode.UNKNOWN, "Stream removed (Failed parsing HTTP/2 (Frame size 16711684 ...))", True),
        (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 1", True),
        # Nothing listens there, or TLS does not match: waiting does not help.
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", False),
        (grpc.StatusCode.UNAUTHENTICATED, "bad token", False),
        # A proxy answered, but its receiver for this session is down or draining (nginx, tests/e2e/test_proxy):
        # the proxy routes elsewhere once it counts that receiver failed, or the receiver comes back.
        (grpc.StatusCode.UNAVAILABLE, "Received http2 header with status: 502", True),
        (grpc.StatusCode.UNAVAILABLE, "Received http2 header with status: 503", True),
    ],
)
def test_before_the_handshake_only_a_garbled_link_or_a_proxy_without_a_receiver_is_tried_again(code, details, retried):
    exc = _Broken(code, details)
    failure = _failure(exc, SendReport())  # no session folder yet: the handshake never came
    assert not failure.reached
    assert _worth_retrying(exc, failure, _Attempt()) is retried


@pytest.mark.parametrize(
    ("code", "details", "retried"),
    [
        # A flipped byte in the trailer block after the handshake (seen in CI, test_faults): the receiver's
        # trailer got through, yet gRPC's transport tore the stream down. The link's fault.
        (grpc.StatusCode.INTERNAL, "Stream removed (Illegal header key: gr\x8fc-message)", True),
        (grpc.StatusCode.UNAVAILABLE, "receiver shutting down", True),
        # The receiver's own INTERNAL or UNKNOWN is a bug there: sending again would hit it again.
        (grpc.StatusCode.INTERNAL, "decoder failed", False),
        (grpc.StatusCode.UNKNOWN, "Exception iterating responses", False),
    ],
)
def test_after_the_handshake_a_status_the_transport_made_up_is_tried_again(code, details, retried):
    exc = _Broken(code, details, trailers=(RECEIVER_METADATA,))
    report = SendReport()
    report.session_dir = "session-1"  # the handshake came
    failure = _failure(exc, report)
    assert failure.reached
    assert _worth_retrying(exc, failure, _Attempt()) is retried


class _Watched:
    """What the progress watchdog sees of an attempt."""

    def __init__(self, handshake_seen: bool) -> None:
        self.handshake_seen, self.stalled, self.cancelled_at = handshake_seen, False, None

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()


def test_a_stalled_attempt_is_dropped_early_enough_to_try_a_fresh_connection():
    """Seen in CI: a flipped flow-control frame stalled a live connection; the session gave up at --retry-for."""
    watchdog = _ProgressWatchdog(retry_for=1.5)
    try:
        attempt, started = _Watched(handshake_seen=True), time.monotonic()
        watchdog.watch(attempt)
        deadline = started + 1.5
        while attempt.cancelled_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert attempt.stalled and attempt.cancelled_at - started < 1.5 / STALL_FRACTION + 0.3
    finally:
        watchdog.stop()


def test_an_attempt_before_its_handshake_gets_all_of_retry_for():
    watchdog = _ProgressWatchdog(retry_for=1.2)
    try:
        attempt, started = _Watched(handshake_seen=False), time.monotonic()
        watchdog.watch(attempt)
        time.sleep(0.8)
        assert attempt.cancelled_at is None
        while attempt.cancelled_at is None and time.monotonic() < started + 3:
            time.sleep(0.02)
        assert attempt.cancelled_at - started >= 1.1
    finally:
        watchdog.stop()
