"""PNG encoding on several cores: libpng runs without the GIL, so each worker thread uses a core of its own."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from latentlink.shared.image_io import encode_png

__all__ = ["PngWorkers"]


class PngWorkers:
    """Encodes batches of images to PNG bytes on `workers` threads, shared by every session of a receiver."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="png") if self.workers > 1 else None

    def encode(self, images: Sequence[np.ndarray]) -> list[bytes]:
        """PNG bytes of each image, in order; a batch is cut into one contiguous part per worker."""
        if self._pool is None or len(images) < 2:
            return _encode_all(images)
        parts = min(self.workers, len(images))
        bounds = [len(images) * i // parts for i in range(parts + 1)]
        futures = [self._pool.submit(_encode_all, images[bounds[i] : bounds[i + 1]]) for i in range(parts)]
        return [data for future in futures for data in future.result()]


def _encode_all(images: Sequence[np.ndarray]) -> list[bytes]:
    return [encode_png(image) for image in images]
