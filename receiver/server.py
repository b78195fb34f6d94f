"""Builds the receiver's gRPC server; the CLI and the tests share it."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc

from receiver.model_store import ModelStore
from receiver.servicer import LatentLinkServicer
from shared.proto import latentlink_pb2_grpc
from shared.protocol import server_options

__all__ = ["MAX_SESSIONS", "create_server"]

# Each sync-server stream holds one worker thread for its whole session.
MAX_SESSIONS = 32


def create_server(address: str, out_dir: Path, models_dir: Path, device: str = "auto") -> tuple[grpc.Server, int]:
    """Creates (unstarted) a receiver bound to `address`; returns it and the bound port.

    Raises OSError when the address cannot be bound (e.g. the port is in use).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_SESSIONS, thread_name_prefix="session"),
        options=server_options(),
        maximum_concurrent_rpcs=MAX_SESSIONS,
    )
    store = ModelStore(models_dir, device=device)
    latentlink_pb2_grpc.add_LatentLinkServicer_to_server(LatentLinkServicer(out_dir, store), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or unavailable")
    return server, port
