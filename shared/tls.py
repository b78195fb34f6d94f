"""TLS credentials for both ends, from PEM files (grpcio's own TLS, optionally mutual)."""

from __future__ import annotations

from pathlib import Path

import grpc

__all__ = ["channel_credentials", "server_credentials"]


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f'cannot read the {what} "{path}": {exc.strerror}') from None


def server_credentials(cert: Path, key: Path, client_ca: Path | None = None) -> grpc.ServerCredentials:
    """The receiver's certificate and key; with `client_ca`, senders must show a certificate it signed."""
    pair = (_read(key, "TLS key"), _read(cert, "TLS certificate"))
    ca = _read(client_ca, "client CA")
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    """Trusts `ca` (None: the system's roots) and, for mutual TLS, presents `cert` and `key`."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CA certificate"),
        private_key=_read(key, "TLS key"),
        certificate_chain=_read(cert, "TLS certificate"),
    )
