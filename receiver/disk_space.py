"""Health follows the output folder's free space: a receiver whose disk is (nearly) full says NOT_SERVING, so that
probes and load balancers send new sessions elsewhere, and SERVING again once there is room."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from grpc_health.v1 import health_pb2

__all__ = ["MIN_FREE_BYTES", "DiskSpace"]

log = logging.getLogger("latentlink.receiver")

MIN_FREE_BYTES = 64 << 20  # a batch of 4 M pixels writes at most about 12 MB of PNG: room for a few
RECHECK_S = 2.0  # how often a full disk is looked at again


class DiskSpace:
    """Watches the disk that holds `folder`; `set_status` gets NOT_SERVING when it falls under `min_free` bytes
    free and SERVING when it has them again."""

    def __init__(
        self,
        folder: Path,
        set_status: Callable[[int], None],
        min_free: int = MIN_FREE_BYTES,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.folder, self.set_status, self.min_free, self.recheck_s = Path(folder), set_status, min_free, recheck_s
        self._lock = threading.Lock()
        self._watching = False

    def has_room(self) -> bool:
        """Whether the disk has `min_free` bytes free (a disk that cannot be read counts as full)."""
        try:
            return shutil.disk_usage(self.folder).free >= self.min_free
        except OSError:
            return False

    def check(self) -> None:
        """Looks before a batch is written: a full disk turns the receiver NOT_SERVING until a watcher sees room."""
        if self.has_room():
            return
        with self._lock:
            if self._watching:
                return
            self._watching = True
        log.warning("under %d MB free for %s: NOT_SERVING until there is room", self.min_free >> 20, self.folder)
        self.set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        threading.Thread(target=self._watch, name="disk-space", daemon=True).start()

    def _watch(self) -> None:
        while not self.has_room():
            time.sleep(self.recheck_s)
        log.info("room again on the disk of %s: SERVING", self.folder)
        with self._lock:
            self._watching = False
            self.set_status(health_pb2.HealthCheckResponse.SERVING)
