"""Bounded hand-offs between threads that give up when the work they serve has ended."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

__all__ = ["put_while"]


def put_while(target: queue.Queue, item: Any, alive: Callable[[], bool], poll_s: float = 0.2) -> bool:
    """Puts `item` into a bounded queue, waiting for room only while `alive()`; False if it gave up."""
    while alive():
        try:
            target.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False
