"""How many pixels of images of any size the receiver decodes at once, across all its sessions.

Decoding a photo holds about 200 bytes of activations per pixel (0.8 GB for a
4 M pixel image). Each session decodes in its own thread, so without a shared
bound 32 sessions could hold 25 GB; with it, memory stays under the budget
whatever the senders send, and sessions wait their turn instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from latentlink.shared.protocol import MAX_BATCH_PIXELS

__all__ = ["DECODE_PIXELS", "SHARED", "PixelBudget"]

DECODE_PIXELS = 2 * MAX_BATCH_PIXELS  # two of the largest images at once: about 1.6 GB


class PixelBudget:
    """A counting budget of pixels: `reserve(n)` waits until n pixels are free, and frees them after."""

    def __init__(self, pixels: int = DECODE_PIXELS) -> None:
        self.total = self.free = pixels
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.total)  # an image larger than the whole budget runs alone
        with self._changed:
            self._changed.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self._changed:
                self.free += pixels
                self._changed.notify_all()


SHARED = PixelBudget()
