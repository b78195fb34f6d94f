"""The shared token both ends use: where it comes from and how it travels (call metadata)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AUTH_HEADER", "TOKEN_ENV", "bearer_metadata", "read_token"]

TOKEN_ENV = "LATENTLINK_TOKEN"
AUTH_HEADER = "authorization"


def read_token(token_file: Path | None) -> str | None:
    """Returns the token from a file (first line) or $LATENTLINK_TOKEN, else None.

    Never from a command-line argument, which other users could read in `ps`.
    """
    if token_file is not None:
        token = Path(token_file).read_text().strip()
        if not token:
            raise ValueError(f'token file "{token_file}" is empty')
        return token
    return os.environ.get(TOKEN_ENV) or None


def bearer_metadata(token: str | None) -> list[tuple[str, str]]:
    """Call metadata that carries the token (none when there is no token)."""
    return [(AUTH_HEADER, f"Bearer {token}")] if token else []
