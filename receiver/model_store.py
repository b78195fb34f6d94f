"""Content-addressed decoder cache: files on disk named by digest, compiled decoders in memory."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from latentlink.receiver.log_text import peer_text
from latentlink.receiver.model_upload import PARTIAL_FOLDER
from latentlink.shared.model_format import ModelFormatError, NetworkInfo, parse_network
from latentlink.shared.proto import model_pb2
from latentlink.shared.protocol import MAX_DECODER_ACTIVATIONS, MAX_DECODER_MACS

__all__ = ["DecoderTooCostly", "ModelStore", "is_digest"]

log = logging.getLogger(__name__)
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """True for a lowercase hex SHA-256."""
    return bool(_DIGEST.fullmatch(text))


class DecoderTooCostly(ModelFormatError):
    """A valid decoder that asks for more work per image than this receiver allows."""


class ModelStore:
    """Holds verified decoder files under `folder/<digest>.lln`; survives restarts.

    Both caches are bounded, least recently used out: at most `max_loaded`
    compiled decoders in memory, and at most `max_files` files of `max_bytes`
    in all on disk (partial uploads under `.partial/` likewise).
    """

    def __init__(
        self,
        folder: Path,
        device: str = "auto",
        max_loaded: int = 8,
        max_files: int = 64,
        max_bytes: int = 1 << 30,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.max_loaded, self.max_files, self.max_bytes = max_loaded, max_files, max_bytes
        self._loaded: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ModelFormatError(f'"{digest}" is not a SHA-256 digest')
        return self.folder / f"{digest}.lln"

    def has(self, digest: str) -> bool:
        """True when a usable decoder with this digest is cached.

        A cached file that no longer verifies (damaged on disk) is deleted, so
        that the sender is asked to upload it again instead of every session failing.
        """
        with self._lock:
            if digest in self._loaded:
                return True
        path = self._path(digest)
        if not path.is_file():
            return False
        try:
            self.decoder(digest)
        except (ModelFormatError, OSError) as exc:
            log.warning("cached decoder %s is damaged (%s): deleted, to be uploaded again", digest[:12], exc)
            path.unlink(missing_ok=True)
            return False
        return True

    def add(self, digest: str, data: bytes) -> NetworkInfo:
        """Verifies a received decoder (digest, format, work per image) and caches it atomically."""
        info = parse_network(data, expected_digest=digest, role=model_pb2.ROLE_DECODER)
        if info.activations > MAX_DECODER_ACTIVATIONS or info.macs > MAX_DECODER_MACS:
            raise DecoderTooCostly(
                f"it needs {info.activations:,} activations and {info.macs:,} multiply-adds per image; "
                f"the limits are {MAX_DECODER_ACTIVATIONS:,} and {MAX_DECODER_MACS:,}"
            )
        path = self._path(digest)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{digest[:12]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._prune(self.folder.glob("*.lln"), keep=path)
        self._prune((self.folder / PARTIAL_FOLDER).glob("*.part"), keep=path)
        log.info("cached decoder %s (%s, %d bytes)", digest[:12], peer_text(info.network.model_name), len(data))
        return info

    def decoder(self, digest: str):
        """Returns the compiled decoder for a cached digest, re-verifying the file on first use."""
        from latentlink.shared.network_runtime import load_network

        with self._lock:
            path = self._path(digest)
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: the last the disk bound evicts
            if digest in self._loaded:
                self._loaded.move_to_end(digest)
                return self._loaded[digest]
            info = parse_network(path.read_bytes(), expected_digest=digest, role=model_pb2.ROLE_DECODER)
            compiled = load_network(info, self.device)
            self._loaded[digest] = compiled
            if len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)  # nothing else holds it: the garbage collector frees it
            return compiled

    def _prune(self, files, keep: Path) -> None:
        """Deletes the least recently used files past the count and size bounds."""
        entries = []
        for path in files:
            with contextlib.suppress(OSError):
                stat = path.stat()
                entries.append((stat.st_mtime_ns, stat.st_size, path))
        entries.sort(reverse=True)  # most recent first
        count = total = 0
        for _, size, path in entries:
            count, total = count + 1, total + size
            if path != keep and (count > self.max_files or total > self.max_bytes):
                path.unlink(missing_ok=True)
                log.info("decoder cache: evicted %s", path.name[:12])
