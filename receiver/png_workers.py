"""PNG encoding on several cores: zlib-ng runs without the GIL, so each worker thread uses a core of its own."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from latentlink.shared.image_io import encode_pngs

__all__ = ["PendingPngs", "PngWorkers"]


class PngWorkers:
    """Encodes batches of images to PNG bytes on `workers` threads, shared by every session of a receiver."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="png") if self.workers > 1 else None

    def encode(self, images: Sequence[np.ndarray]) -> list[bytes]:
        """PNG bytes of each image, in order."""
        return self.start(images).result()

    def start(self, images: Sequence[np.ndarray]) -> PendingPngs:
        """Starts encoding a batch, cut into one contiguous part per worker: the caller goes on while they work.
        With a single worker, the batch is encoded here and now."""
        if self._pool is None or len(images) == 0:
            done: Future = Future()
            done.set_result(encode_pngs(images))
            return PendingPngs([done])
        parts = min(self.workers, len(images))
        bounds = [len(images) * i // parts for i in range(parts + 1)]
        # a stack's parts are stacks, encoded at once; a list's, one image at a time
        return PendingPngs([self._pool.submit(encode_pngs, images[bounds[i] : bounds[i + 1]]) for i in range(parts)])


class PendingPngs:
    """A batch's PNG bytes being encoded."""

    def __init__(self, parts: list[Future]) -> None:
        self._parts = parts

    def result(self) -> list[bytes]:
        """The PNG bytes of each image, in order, once every part is done."""
        return [data for part in self._parts for data in part.result()]
