"""Builds the receiver's gRPC server; the CLI and the tests share it."""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from latentlink.receiver.auth import TokenAuthInterceptor
from latentlink.receiver.disk_space import MIN_FREE_BYTES, DiskSpace
from latentlink.receiver.inbox import DEFAULT_IDLE_TIMEOUT_S
from latentlink.receiver.model_store import ModelStore
from latentlink.receiver.png_workers import PngWorkers
from latentlink.receiver.servicer import LatentLinkServicer
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import MAX_SESSIONS, server_options
from latentlink.shared.serde import OutputFormat

__all__ = ["MAX_SESSIONS", "SERVICE_NAME", "create_server"]

HEADROOM_RPCS = 4
SERVICE_NAME = "latentlink.v1.LatentLink"


def create_server(
    address: str,
    out_dir: Path,
    models_dir: Path,
    device: str = "auto",
    token: str | None = None,
    credentials: grpc.ServerCredentials | None = None,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    output_format: int = OutputFormat.PNG,
    on_session_end: Callable[[dict], None] = lambda summary: None,
    max_sessions: int = MAX_SESSIONS,
    name: str | None = None,
    png_workers: int = 1,
    health_service: health.HealthServicer | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> tuple[grpc.Server, int]:
    """Creates (unstarted) a receiver bound to `address`; returns it and the bound port.

    It serves the stream, the standard grpc.health.v1 service and server
    reflection, over TLS when `credentials` are given. With a token, every call
    but health checks must carry it; a sender silent for `idle_timeout_s` is cut
    off. Images are written as `output_format`; each finished session's summary
    goes to `on_session_end`; beyond `max_sessions` open sessions, new ones are
    refused with UNAVAILABLE and BUSY_METADATA. The handshake names the receiver
    `name` (default: hostname:port); `png_workers` threads encode its PNGs. A given `health_service` serves the health
    checks, so that the caller can mark the receiver NOT_SERVING when it drains; the receiver marks itself
    NOT_SERVING while the disk of `out_dir` has under `min_free_bytes` free.
    Raises OSError when the address cannot be bound (e.g. the port is in use).
    """
    # Each sync-server stream holds a thread for its whole session; the headroom serves health checks
    # and tells senders past `max_sessions` that the receiver is busy (UNAVAILABLE, BUSY_METADATA).
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_sessions + HEADROOM_RPCS, thread_name_prefix="session"),
        options=server_options(),
        maximum_concurrent_rpcs=max_sessions + HEADROOM_RPCS,
        interceptors=[TokenAuthInterceptor(token)] if token else [],
    )
    store = ModelStore(models_dir, device=device)
    health_service = health_service or health.HealthServicer()

    def set_status(status: int) -> None:
        for service in ("", SERVICE_NAME):
            health_service.set(service, status)

    disk = DiskSpace(out_dir, set_status, min_free_bytes)
    servicer = LatentLinkServicer(
        out_dir, store, idle_timeout_s, output_format, on_session_end, max_sessions, PngWorkers(png_workers), disk
    )
    # Requests arrive as raw bytes: the servicer parses them, so that a garbled one ends the stream with
    # DATA_LOSS (a resend helps) rather than gRPC's INTERNAL.
    stream = grpc.stream_stream_rpc_method_handler(
        servicer.Stream, request_deserializer=None, response_serializer=pb.ReceiverMessage.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, {"Stream": stream}),))
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    set_status(health_pb2.HealthCheckResponse.SERVING)
    # Reflection lets stock clients (grpcurl, Postman) discover the messages without our .proto files.
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or unavailable")
    servicer.name = name or f"{socket.gethostname()}:{port}"
    return server, port
