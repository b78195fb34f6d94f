"""A TCP relay on loopback that breaks, corrupts or stalls the link between a sender and a receiver."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What to do to the bytes. Offsets count every byte of a direction across all connections."""

    cut_every: int | None = None  # close each connection after this many bytes (both directions together)
    flip_up: set[int] = field(default_factory=set)  # sender -> receiver offsets whose byte is inverted
    flip_down: set[int] = field(default_factory=set)  # receiver -> sender
    stall_after: int | None = None  # stop forwarding for good after this many bytes (both directions)


class FaultRelay:
    """Forwards 127.0.0.1:<port> to a receiver's port, doing `faults` to the traffic."""

    def __init__(self, target_port: int, faults: Faults) -> None:
        self.target_port, self.faults = target_port, faults
        self.connections = 0
        self._counts = {True: 0, False: 0}
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stops listening and drops every connection (a stalled one too)."""
        self._closed.set()
        self._listener.close()
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            budget = [self.faults.cut_every]
            for source, sink, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, up, budget, (client, upstream)), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool, budget: list, pair) -> None:
        flips = self.faults.flip_up if up else self.faults.flip_down
        try:
            while data := source.recv(16384):
                with self._lock:
                    start = self._counts[up]
                    self._counts[up] += len(data)
                    total = self._counts[True] + self._counts[False]
                    if budget[0] is not None:
                        budget[0] -= len(data)
                    cut = budget[0] is not None and budget[0] <= 0
                    stalled = self.faults.stall_after is not None and total > self.faults.stall_after
                if stalled:
                    self._closed.wait()  # a link that went silent: hold everything until the relay closes
                    break
                hits = [offset - start for offset in flips if start <= offset < start + len(data)]
                if hits:
                    data = bytearray(data)
                    for hit in hits:
                        data[hit] ^= 0xFF
                    data = bytes(data)
                sink.sendall(data)
                if cut:
                    break
        except OSError:
            pass
        for end in pair:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
