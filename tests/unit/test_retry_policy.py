"""Which broken streams the sender tries again: the link's faults yes, a target that is not there no."""

from __future__ import annotations

import grpc
import pytest

from latentlink.sender.report import SendReport
from latentlink.sender.session import _failure, _worth_retrying


class _Broken(grpc.RpcError):
    """A status as our own gRPC reports it: no trailer from a receiver."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return ()


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
