"""A session's journal: which images are durable in its folder, by name and content, across streams and runs.

One 16-byte record per durable image, appended after each group commit: the
BLAKE2b-64 of its name, then its key (see protos/latentlink.proto,
DurableImages). The latest record of a name wins, so an image rewritten with
other content is not mistaken for its old self. Records are not flushed on
their own: a crash may lose the last ones, which only means those images are
sent again; a record is never written before its image is durable.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from latentlink.receiver.output import write_all
from latentlink.shared.serde import KEY_BYTES

__all__ = ["JOURNAL_FOLDER", "MAX_JOURNAL_RECORDS", "SessionJournal"]

# Under the output folder, beside the session folders (session names never start with a dot),
# so that a session's folder holds nothing but its images.
JOURNAL_FOLDER = ".journals"
_RECORD = 2 * KEY_BYTES
# Records read back at most (a session of 4 M image writes); past it, older images are simply sent again.
MAX_JOURNAL_RECORDS = 4 * 1024 * 1024


class SessionJournal:
    """The journal of one session: `<output folder>/.journals/<session>`."""

    def __init__(self, out_dir: Path, session: str) -> None:
        self.path = Path(out_dir) / JOURNAL_FOLDER / session

    def durable_keys(self) -> bytes:
        """The keys of the images durable now (the latest record of each name), concatenated."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return b""
        records = min(size // _RECORD, MAX_JOURNAL_RECORDS)  # a torn last record (a crash) is ignored
        with open(self.path, "rb") as handle:
            handle.seek((size // _RECORD - records) * _RECORD)
            data = handle.read(records * _RECORD)
        latest = {data[i : i + KEY_BYTES]: data[i + KEY_BYTES : i + _RECORD] for i in range(0, len(data), _RECORD)}
        return b"".join(latest.values())

    def record(self, names: Sequence[str], keys: Sequence[bytes]) -> None:
        """Appends the records of images that are now durable."""
        if not names:
            return
        data = b"".join(_name_hash(name) + key for name, key in zip(names, keys, strict=True))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:  # the session's first records (or its folder was removed): make the folder
            self.path.parent.mkdir(exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)


def _name_hash(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=KEY_BYTES).digest()
