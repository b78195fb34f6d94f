"""Which broken streams the sender tries again: the link's faults yes, a target that is not there no."""

from __future__ import annotations

import grpc
import pytest

from latentlink.sender.report import SendReport
from latentlink.sender.session import _failure, _worth_retrying
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
    garbled = False


@pytest.mark.parametrize(
    ("code", "details", "retried"),
    [
        # A flipped byte in an HTTP/2 frame header before the handshake (seen in CI, test_faults): the link's fault.
        (grpc.StatusCode.UNKNOWN, "Stream removed (Failed parsing HTTP/2 (Frame size 16711684 ...))", True),
        (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 1", True),
        # Nothing listens there, or TLS does not match: waiting does not help.
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", False),
        (grpc.StatusCode.UNAUTHENTICATED, "bad token", False),
    ],
)
def test_before_the_handshake_only_a_garbled_link_is_tried_again(code, details, retried):
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
