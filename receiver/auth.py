"""Shared-token authentication: a server interceptor that checks call metadata in constant time."""

from __future__ import annotations

import hmac

import grpc

from latentlink.shared.auth import AUTH_HEADER

__all__ = ["TokenAuthInterceptor"]

# Stock probes (grpc_health_probe, load balancers) must reach the health service without a token.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls whose `authorization` metadata is not `Bearer <token>` (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(_OPEN_PREFIXES):
            return continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get(AUTH_HEADER, "")
        if hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        return _DENY


def _deny(request_iterator, context: grpc.ServicerContext):
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (see --token-file / $LATENTLINK_TOKEN)")


_DENY = grpc.stream_stream_rpc_method_handler(_deny)
