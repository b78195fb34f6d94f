"""Text from a peer, made safe to log: one line, printable, bounded."""

from __future__ import annotations

__all__ = ["peer_text"]


def peer_text(value: object, limit: int = 160) -> str:
    """Escapes control characters (a newline would forge a log line) and cuts the text at `limit` characters."""
    text = str(value)
    escaped = text[:limit].encode("unicode_escape").decode("ascii")
    return escaped + ("..." if len(text) > limit else "")
