"""Checks a receiver makes before it starts, so that each refusal gives its real reason."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from latentlink.shared.protocol import split_host_port

__all__ = ["PreflightError", "check_listen_address", "check_writable_folder", "explain_bind_failure"]


class PreflightError(ValueError):
    """The receiver cannot start as asked; the message says why."""


def check_listen_address(address: str) -> tuple[str, int]:
    """Splits --listen HOST:PORT, refusing what is not one (port 0..65535; 0 picks a free one)."""
    try:
        return split_host_port(address)
    except ValueError as exc:
        raise PreflightError(f'--listen "{address}" is not HOST:PORT: {exc} (port 0 picks a free one)') from None


def check_writable_folder(folder: Path, option: str) -> None:
    """Creates `folder` if needed and proves a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PreflightError(f'cannot write to {option} "{folder}": {exc.strerror or exc}') from None


def explain_bind_failure(address: str) -> str:
    """Says why `address` cannot be listened on, by trying to bind it the way gRPC would."""
    host, port = check_listen_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f'cannot listen on {address}: cannot resolve "{host}" ({exc.strerror})'
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"cannot listen on {address}: port {port} is in use (is another receiver running?)"
                return f"cannot listen on {address}: {exc.strerror} ({sockaddr[0]} is not an address of this machine?)"
    return f"cannot listen on {address}: gRPC refused the address"
