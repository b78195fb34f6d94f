"""A decoder upload that survives broken streams: chunks go to a partial file kept per decoder and session.

One stream at a time holds a session, so a partial file has one writer; a
reconnect of the session finds it and the upload goes on from its end.
"""

from __future__ import annotations

from pathlib import Path

from latentlink.shared.protocol import MODEL_CHUNK_BYTES
from latentlink.shared.serde import ProtocolError

__all__ = ["PARTIAL_FOLDER", "ModelUpload"]

# Inside the decoder cache; partial files are named <digest>.<session>.part.
PARTIAL_FOLDER = ".partial"


class ModelUpload:
    """Collects one decoder's chunks in order; `held` says where a resumed upload goes on.

    Nothing is trusted until the whole file verifies against its digest (the
    caller's job); a file that does not is deleted, so the next try starts afresh.
    """

    def __init__(self, models_dir: Path, digest: str, session: str, size: int) -> None:
        folder = Path(models_dir) / PARTIAL_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.size = folder / f"{digest}.{session}.part", size
        try:
            self.held = self.path.stat().st_size
        except FileNotFoundError:
            self.held = 0
        if self.held > size:  # left by an upload that announced another size: useless
            self.discard()

    def add(self, offset: int, data: bytes) -> None:
        """Appends the next chunk; raises ProtocolError for a gap, an overlap or too many bytes."""
        if offset != self.held:
            raise ProtocolError("INVALID_ARGUMENT", f"model chunk at offset {offset}, expected {self.held}")
        if len(data) > MODEL_CHUNK_BYTES or self.held + len(data) > self.size:
            raise ProtocolError("RESOURCE_EXHAUSTED", f"model transfer exceeds the announced {self.size} bytes")
        with open(self.path, "ab") as handle:
            handle.write(data)
        self.held += len(data)

    def complete(self) -> bytes:
        """The whole file, once every byte arrived; raises ProtocolError for a short one."""
        if self.held != self.size:
            raise ProtocolError("DATA_LOSS", f"decoder transfer truncated: {self.held} of {self.size} bytes")
        return self.path.read_bytes()

    def discard(self) -> None:
        """Forgets what was received (it failed verification, or the upload is done)."""
        self.path.unlink(missing_ok=True)
        self.held = 0
