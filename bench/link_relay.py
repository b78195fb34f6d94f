"""An emulated constrained network link for benchmarks: a shaping TCP relay on loopback.

`LinkRelay` listens on a loopback port and forwards every connection to a target
server on loopback, shaping each direction like a serial link: bytes leave at
most at `rate_bits_per_s` (a token bucket whose burst is the larger of 1500
bytes and 10 ms of the rate) and arrive `latency_s` after they were serialised.
All connections share one link per direction, as they would share a real link.
A gRPC client pointed at the relay's port therefore sees a slow, distant
receiver while both ends run on this machine:

    with LinkRelay(("127.0.0.1", 50051), 1_000_000, 0.02) as relay:
        channel = grpc.insecure_channel(relay.address)

Each direction of each connection buffers a bounded amount (256 KiB, or twice
the bandwidth-delay product when that is larger; 4 MiB in flight with latency
but no rate limit), so a fast sender is held back by TCP flow control instead
of filling memory. The relay refuses any
address that is not loopback: it never touches another machine.

From the command line it runs until Ctrl-C:

    python bench/link_relay.py --target 127.0.0.1:50051 --rate 1Mbit --latency 20ms
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ipaddress
import logging
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["LinkRelay", "format_address", "parse_address", "parse_latency", "parse_rate"]

logger = logging.getLogger("link_relay")

CHUNK_BYTES = 16 * 1024  # largest single read from a socket
BUFFER_BYTES = 256 * 1024  # per direction per connection, unless the bandwidth-delay product needs more
MAX_BUFFER_BYTES = 64 * 1024 * 1024
UNLIMITED_WINDOW_BYTES = 4 * 1024 * 1024  # in flight per direction with latency but no rate limit
BURST_BYTES = 1500  # the token bucket holds at least one Ethernet frame ...
BURST_S = 0.010  # ... or 10 ms worth of the rate, whichever is larger
HALF_CLOSE_IDLE_S = 5.0  # after one side closed, drop the connection once the other is silent this long
_CONNECTION_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError)


def _check_loopback(host: str, what: str) -> None:
    """Raise ValueError unless `host` is a loopback address (127.0.0.0/8, ::1 or "localhost")."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"{what} host must be a non-empty string, got {host!r}")
    if host.lower() == "localhost":
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise ValueError(f"{what} host 'localhost' does not resolve: {exc}") from exc
        resolved = {info[4][0] for info in infos}
        if not resolved or not all(_is_loopback_ip(address) for address in resolved):
            raise ValueError(f"{what} host 'localhost' resolves to non-loopback addresses {sorted(resolved)}")
        return
    if not _is_loopback_ip(host):
        raise ValueError(f"{what} host {host!r} is not a loopback address; this relay only works on loopback")


def _is_loopback_ip(text: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped forms included); False for anything else."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def format_address(host: str, port: int) -> str:
    """ "host:port", with an IPv6 host in brackets ("[::1]:50051")."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Link:
    """One direction of the emulated link, shared by all connections: a serialiser plus a propagation delay."""

    def __init__(self, rate_bits_per_s: float | None, latency_s: float) -> None:
        self.rate_bytes_per_s = None if rate_bits_per_s is None else rate_bits_per_s / 8.0
        self.latency_s = latency_s
        if self.rate_bytes_per_s is None:
            self.burst_bytes = CHUNK_BYTES
            window = UNLIMITED_WINDOW_BYTES if latency_s > 0 else 0
        else:
            self.burst_bytes = max(BURST_BYTES, int(self.rate_bytes_per_s * BURST_S))
            window = self.rate_bytes_per_s * (latency_s + self.burst_bytes / self.rate_bytes_per_s)
        self.buffer_bytes = int(min(MAX_BUFFER_BYTES, max(BUFFER_BYTES, 2 * window)))
        self._free_at = 0.0  # loop time at which the serialiser finishes what it was given

    async def transmit(self, size: int) -> float:
        """Serialise `size` bytes (waiting while the link is busy beyond one burst); return their arrival time."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.rate_bytes_per_s is None:
            return now + self.latency_s
        done = max(now, self._free_at) + size / self.rate_bytes_per_s
        self._free_at = done
        wait = done - now - self.burst_bytes / self.rate_bytes_per_s
        if wait > 0:
            await asyncio.sleep(wait)
        return done + self.latency_s

    def eof_arrival(self) -> float:
        """Arrival time of a FIN sent now: after everything already serialised, plus the latency."""
        return max(asyncio.get_running_loop().time(), self._free_at) + self.latency_s


class _Pipe:
    """A byte-bounded FIFO of (arrival time, data) between a direction's reader and writer; data None is EOF."""

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[float, bytes | None]] = deque()
        self._size = 0
        self._limit = limit
        self._changed = asyncio.Condition()

    async def put(self, arrival: float, data: bytes | None) -> None:
        """Append an item, waiting while the pipe holds `limit` bytes or more."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < self._limit)
            self._items.append((arrival, data))
            self._size += len(data or b"")
            self._changed.notify_all()

    async def get(self) -> tuple[float, bytes | None]:
        """Remove and return the oldest item, waiting for one."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            return self._pop()

    async def get_due(self, now: float, max_bytes: int) -> list[bytes]:
        """Remove data items (not EOF) that have arrived by `now`, up to about `max_bytes`."""
        parts: list[bytes] = []
        async with self._changed:
            taken = 0
            while self._items and taken < max_bytes:
                arrival, data = self._items[0]
                if data is None or arrival > now:
                    break
                self._pop()
                parts.append(data)
                taken += len(data)
        return parts

    def _pop(self) -> tuple[float, bytes | None]:
        item = self._items.popleft()
        self._size -= len(item[1] or b"")
        self._changed.notify_all()
        return item


class _Connection:
    """One relayed connection: two shaped directions, closed together."""

    def __init__(
        self,
        relay: LinkRelay,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        name: str,
    ) -> None:
        self._relay = relay
        self._client = client
        self._server = server
        self._name = name
        self.last_activity = asyncio.get_running_loop().time()

    async def run(self) -> None:
        """Relay both directions until both have ended, an error occurs or the relay stops."""
        loop = asyncio.get_running_loop()
        up = asyncio.create_task(self._direction(self._client[0], self._server[1], self._relay._up, up=True))
        down = asyncio.create_task(self._direction(self._server[0], self._client[1], self._relay._down, up=False))
        graceful = False
        try:
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if all(task.exception() is None for task in done):
                # One side closed and its FIN was passed on: the other direction may still flow,
                # until it ends too or goes quiet for HALF_CLOSE_IDLE_S.
                self.last_activity = loop.time()
                while pending and loop.time() - self.last_activity < HALF_CLOSE_IDLE_S:
                    done, pending = await asyncio.wait(pending, timeout=1.0)
                if pending:
                    logger.debug("%s: half-closed and idle for %.0f s, closing", self._name, HALF_CLOSE_IDLE_S)
            for task in (up, down):
                if task.done() and task.exception() is not None:
                    logger.debug("%s: %r", self._name, task.exception())
            graceful = not pending and all(task.exception() is None for task in (up, down))
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            await self._close(graceful)

    async def _direction(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link, up: bool) -> None:
        """Shape the bytes read from `source` through `link` and write them to `sink`; forward EOF."""
        pipe = _Pipe(link.buffer_bytes)
        tasks = {
            asyncio.create_task(self._read(source, link, pipe)),
            asyncio.create_task(self._write(pipe, sink, up)),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, source: asyncio.StreamReader, link: _Link, pipe: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await source.read(CHUNK_BYTES)
            if not data:
                await pipe.put(link.eof_arrival(), None)
                return
            self.last_activity = loop.time()
            for start in range(0, len(data), link.burst_bytes):
                piece = data[start : start + link.burst_bytes]
                await pipe.put(await link.transmit(len(piece)), piece)

    async def _write(self, pipe: _Pipe, sink: asyncio.StreamWriter, up: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrival, data = await pipe.get()
            delay = arrival - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if data is None:
                if sink.can_write_eof():
                    sink.write_eof()  # pass the half-close on; the other direction keeps flowing
                return
            parts = [data, *await pipe.get_due(loop.time(), CHUNK_BYTES * 4)]
            payload = b"".join(parts) if len(parts) > 1 else data
            # Count before handing over, so a reader that has the bytes always sees them counted.
            self._relay._count(up, len(payload))
            sink.write(payload)
            await sink.drain()
            self.last_activity = loop.time()

    async def _close(self, graceful: bool) -> None:
        writers = (self._client[1], self._server[1])
        for writer in writers:
            if graceful:
                writer.close()
            else:
                writer.transport.abort()
        for writer in writers:
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
            except (*_CONNECTION_ERRORS, TimeoutError) as exc:
                logger.debug("%s: while closing: %r", self._name, exc)
                writer.transport.abort()
        logger.debug("%s: closed (%s)", self._name, "clean" if graceful else "aborted")


class LinkRelay:
    """A TCP relay on loopback that emulates a link of limited rate and fixed one-way latency.

    `target` is the (host, port) of the server to forward to, `rate_bits_per_s` the
    link rate in each direction (None: unlimited) and `latency_s` the one-way delay.
    Used as a context manager, it serves from a background thread on an ephemeral
    port of `listen_host` (or on `listen_port`); `port` and `address` say where, and `bytes_up`
    (client to target) and `bytes_down` (target to client) count the bytes relayed.
    Only loopback addresses are accepted, for both the target and the listener.
    """

    def __init__(
        self,
        target: tuple[str, int],
        rate_bits_per_s: float | None,
        latency_s: float = 0.0,
        listen_host: str = "127.0.0.1",
        *,
        listen_port: int = 0,
    ) -> None:
        target_host, target_port = target
        _check_loopback(target_host, "target")
        _check_loopback(listen_host, "listen")
        if not isinstance(target_port, int) or not 0 < target_port < 65536:
            raise ValueError(f"target port must be in 1..65535, got {target_port!r}")
        if not isinstance(listen_port, int) or not 0 <= listen_port < 65536:
            raise ValueError(f"listen port must be in 0..65535, got {listen_port!r}")
        if rate_bits_per_s is not None and not (math.isfinite(rate_bits_per_s) and rate_bits_per_s > 0):
            raise ValueError(f"rate_bits_per_s must be positive and finite or None, got {rate_bits_per_s!r}")
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s must be a finite number >= 0, got {latency_s!r}")
        self.target = (target_host, target_port)
        self.rate_bits_per_s = rate_bits_per_s
        self.latency_s = latency_s
        # "localhost" may name both 127.0.0.1 and ::1, which would get two different ephemeral ports.
        self.listen_host = "127.0.0.1" if listen_host.lower() == "localhost" else listen_host
        self.listen_port = listen_port
        self.port = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._up = _Link(rate_bits_per_s, latency_s)
        self._down = _Link(rate_bits_per_s, latency_s)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._connections: set[asyncio.Task[None]] = set()
        self._accepted = 0

    @property
    def address(self) -> str:
        """Where clients connect: "127.0.0.1:PORT" (or "[::1]:PORT")."""
        return format_address(self.listen_host, self.port)

    def start(self, timeout_s: float = 10.0) -> LinkRelay:
        """Bind the listening port and start relaying in a background thread; return self."""
        if self._thread is not None:
            raise RuntimeError("LinkRelay already started")
        self._thread = threading.Thread(target=self._thread_main, name=f"LinkRelay-{self.target[1]}", daemon=True)
        self._thread.start()
        try:
            self.port = self._started.result(timeout=timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, close every relayed connection and join the background thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:  # the loop has already finished
                pass
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("relay thread did not stop within %.1f s", timeout_s)

    def __enter__(self) -> LinkRelay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _count(self, up: bool, size: int) -> None:
        if up:
            self.bytes_up += size
        else:
            self.bytes_down += size

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the starting thread, or logged
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                logger.error("relay loop failed: %r", exc)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(_quiet_exception_handler)
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._on_client, self.listen_host, self.listen_port)
        try:
            self._started.set_result(server.sockets[0].getsockname()[1])
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    def _on_client(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # Each connection runs in a task of our own: the relay cancels it on stop, and asyncio 3.11's
        # start_server logs a traceback for a cancelled task of its own making.
        self._accepted += 1
        peer = client_writer.get_extra_info("peername")
        name = f"connection {self._accepted} from {format_address(*peer[:2]) if peer else '?'}"
        task = asyncio.create_task(self._relay_connection(client_reader, client_writer, name))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _relay_connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, name: str
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except BaseException as exc:
            client_writer.transport.abort()
            if not isinstance(exc, _CONNECTION_ERRORS):
                raise
            logger.debug("%s: cannot reach target %s: %r", name, format_address(*self.target), exc)
            return
        logger.debug("%s: relaying to %s", name, format_address(*self.target))
        try:
            await _Connection(self, (client_reader, client_writer), (server_reader, server_writer), name).run()
        except _CONNECTION_ERRORS as exc:
            logger.debug("%s: %r", name, exc)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log connection errors the event loop reports at debug level; anything else as asyncio would."""
    if isinstance(context.get("exception"), _CONNECTION_ERRORS):
        logger.debug("event loop: %s: %r", context.get("message"), context.get("exception"))
    else:
        loop.default_exception_handler(context)


_RATE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float | None:
    """Bits per second from "1Mbit", "500kbit", "10mbps", "2.5Gbit", "64000" (bits/s); None for "unlimited"."""
    cleaned = text.strip().lower()
    if cleaned in {"unlimited", "none", "inf"}:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?)(?:bit|bits|bps|bit/s)?", cleaned)
    if match is None:
        raise ValueError(f"cannot parse rate {text!r}: use e.g. 1Mbit, 500kbit, 10Mbit or unlimited")
    rate = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {text!r}")
    return rate


_LATENCY_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_latency(text: str) -> float:
    """Seconds from "20ms", "0.05s", "500us" or "0"."""
    cleaned = text.strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|us)?", cleaned)
    if match is None or (match.group(2) is None and float(match.group(1)) != 0):
        raise ValueError(f"cannot parse latency {text!r}: use e.g. 20ms or 0.05s")
    return float(match.group(1)) * _LATENCY_UNITS[match.group(2) or "s"]


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) from "127.0.0.1:50051", "[::1]:50051" or "localhost:50051"."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if match is None:
        raise ValueError(f"cannot parse address {text!r}: use HOST:PORT or [IPV6]:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


_T = TypeVar("_T")


def _argument(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """Wrap a parser for argparse so that its ValueError message reaches the user."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return convert


def main(argv: list[str] | None = None) -> int:
    """Run a relay from the command line until Ctrl-C."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--target", required=True, type=_argument(parse_address), help="HOST:PORT to forward to")
    parser.add_argument("--rate", default="unlimited", type=_argument(parse_rate), help="e.g. 1Mbit, 500kbit")
    parser.add_argument("--latency", default="0ms", type=_argument(parse_latency), help="one-way, e.g. 20ms, 0.05s")
    parser.add_argument("--listen", default="127.0.0.1:0", type=_argument(parse_address), help="HOST:PORT to serve")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    listen_host, listen_port = args.listen
    try:
        relay = LinkRelay(args.target, args.rate, args.latency, listen_host=listen_host, listen_port=listen_port)
    except ValueError as exc:
        parser.error(str(exc))
    with relay:
        print(f"relay listening on {relay.address}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print(f"relayed {relay.bytes_up} bytes up, {relay.bytes_down} bytes down", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
