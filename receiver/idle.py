"""Ends a stream whose sender goes quiet, so a stalled client cannot hold a session thread forever."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc

from latentlink.shared.queues import put_while

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "with_idle_limit"]

DEFAULT_IDLE_TIMEOUT_S = 120.0
_END = object()


def with_idle_limit(requests: Iterator, context: grpc.ServicerContext, idle_s: float) -> Iterator:
    """Yields the requests; aborts with DEADLINE_EXCEEDED when none arrives for `idle_s` seconds.

    A helper thread reads the stream into a small queue (which also bounds what a
    fast sender can buffer here); the handler waits on the queue with a timeout.
    """
    pending: queue.Queue = queue.Queue(maxsize=4)

    def put(item) -> bool:
        return put_while(pending, item, context.is_active, poll_s=0.5)

    def pump() -> None:
        try:
            for message in requests:
                if not put(message):
                    return
        except Exception:  # the RPC ended under us (cancelled, aborted): nothing more to read
            pass
        put(_END)

    threading.Thread(target=pump, daemon=True, name="stream-reader").start()
    deadline = time.monotonic() + idle_s
    while True:
        try:
            message = pending.get(timeout=0.2)
        except queue.Empty:
            if not context.is_active():  # cancelled or failed under us: free the session thread now
                return
            if time.monotonic() > deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no message from the sender for {idle_s:g} s")
            continue
        if message is _END:
            return
        deadline = time.monotonic() + idle_s
        yield message
