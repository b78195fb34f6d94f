"""Reads image batches ahead of the encoder, in a thread, so that file reads and PNG decoding overlap it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from latentlink.shared.image_io import ImageError, SourceImage

__all__ = ["LoadedBatch", "ReadAhead", "load_batch"]

_END = object()


@dataclass(frozen=True)
class LoadedBatch:
    names: list[str]
    # (len(names), height, width) uint8; a list when images of any size differ in shape
    pixels: np.ndarray | list[np.ndarray] | None
    failed: dict[str, str]  # name -> why it could not be read


def load_batch(batch: Sequence[SourceImage]) -> LoadedBatch:
    """Reads a batch of images; unreadable ones become failures."""
    images, names, failed = [], [], {}
    for source in batch:
        try:
            images.append(source.load())
            names.append(source.name)
        except ImageError as exc:
            failed[source.name] = str(exc)
    if not images:
        return LoadedBatch(names, None, failed)
    same = len({image.shape for image in images}) == 1
    return LoadedBatch(names, np.stack(images) if same else images, failed)


class ReadAhead:
    """Iterates loaded batches, read up to `depth` ahead by a thread; its errors are raised here. Close when done."""

    def __init__(self, batches: Iterable[Sequence[SourceImage]], depth: int) -> None:
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._room = threading.Semaphore(depth)
        self._closed = threading.Event()
        threading.Thread(target=self._fill, args=(iter(batches),), daemon=True, name="read-ahead").start()

    def _fill(self, batches: Iterator[Sequence[SourceImage]]) -> None:
        try:
            for batch in batches:
                self._room.acquire()
                if self._closed.is_set():
                    return
                self._ready.put(load_batch(batch))
            self._ready.put(_END)
        except BaseException as exc:  # handed to the consumer, which ends the session
            self._ready.put(exc)

    def __iter__(self) -> Iterator[LoadedBatch]:
        while not self._closed.is_set():
            item = self._ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self._room.release()
            yield item

    def close(self) -> None:
        """Stops reading: the thread ends at its next batch."""
        self._closed.set()
        self._room.release()
