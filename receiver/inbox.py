"""What a session handler waits on: the sender's messages and its own workers' notices, in one queue.

A helper thread reads the stream and parses each message (at most `depth`
messages ahead, which bounds what a fast sender can buffer here); workers post
notices (a batch is durable) that wake the handler at once, whatever the
sender does. Iterating raises ProtocolError for a garbled message
(DATA_LOSS), a sender silent for `idle_s` (DEADLINE_EXCEEDED) or a takeover
(ABORTED), and ends the moment gRPC ends the call.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from latentlink.shared.serde import ProtocolError, parse_sender_message

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "Inbox", "Notice"]

DEFAULT_IDLE_TIMEOUT_S = 120.0
_END = object()  # the sender closed its side, or the call ended
_TAKEN_OVER = object()  # a newer stream of the same sender took this session over


@dataclass(frozen=True)
class Notice:
    """Something a worker of this session reports to its handler."""

    what: Any


class Inbox:
    """Merges the sender's messages, read by a helper thread, with notices posted by workers."""

    def __init__(self, requests: Iterator, context: grpc.ServicerContext, idle_s: float, depth: int = 4) -> None:
        self._context, self._idle_s = context, idle_s
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._room = threading.Semaphore(depth)
        self._ended = threading.Event()
        context.add_callback(self._end)  # cancelled, aborted or done: wake the reader and the handler
        threading.Thread(target=self._read, args=(requests,), daemon=True, name="stream-reader").start()

    def post(self, what: Any) -> None:
        """Wakes the handler with a notice (thread-safe)."""
        self._events.put(Notice(what))

    def take_over(self) -> None:
        """Ends this stream with ABORTED at the handler's next wait: its sender reconnected (thread-safe)."""
        self._events.put(_TAKEN_OVER)

    def __iter__(self) -> Iterator[Any]:
        """Yields sender messages and Notices; ends when the sender closes its side or the call ends."""
        deadline = time.monotonic() + self._idle_s
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ProtocolError("DEADLINE_EXCEEDED", f"no message from the sender for {self._idle_s:g} s") from None
            if event is _END:
                return
            if event is _TAKEN_OVER:
                raise ProtocolError("ABORTED", "the sender reconnected: a newer stream took this session")
            if isinstance(event, ProtocolError):
                raise event
            if not isinstance(event, Notice):
                self._room.release()
                deadline = time.monotonic() + self._idle_s
            yield event

    def _read(self, requests: Iterator[bytes]) -> None:
        try:
            for raw in requests:
                self._room.acquire()
                if self._ended.is_set():
                    return
                try:
                    self._events.put(parse_sender_message(raw))
                except ProtocolError as exc:  # garbled in transit: the handler ends the stream with its status
                    self._events.put(exc)
                    return
        except Exception:  # the RPC ended under us (cancelled, aborted): nothing more to read
            pass
        self._events.put(_END)

    def _end(self) -> None:
        self._ended.set()
        self._room.release()  # a reader waiting for room sees the end
        self._events.put(_END)
