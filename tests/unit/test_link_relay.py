"""bench/link_relay.py: bytes pass intact, the rate and latency are applied, only loopback, clean shutdown."""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import load_bench

link_relay = load_bench("link_relay")
LinkRelay = link_relay.LinkRelay


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back; counts the connections whose handler is still running."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.open_connections = 0
        self.accepted = 0
        self.changed = threading.Condition()

    def wait_until_idle(self, timeout_s: float) -> bool:
        """True once at least one connection was served and none is open, within `timeout_s`."""
        with self.changed:
            return self.changed.wait_for(lambda: self.accepted > 0 and self.open_connections == 0, timeout_s)


class EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        with self.server.changed:
            self.server.open_connections += 1
            self.server.accepted += 1
            self.server.changed.notify_all()
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass
        finally:
            with self.server.changed:
                self.server.open_connections -= 1
                self.server.changed.notify_all()


@pytest.fixture(autouse=True)
def no_logged_problems(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The relay (and asyncio under it) must not log warnings or tracebacks for ordinary disconnects."""
    caplog.set_level(logging.WARNING)
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]  # records: teardown's
    problems = [record for record in records if record.levelno >= logging.WARNING]
    assert not problems, [record.getMessage() for record in problems]


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _target(server: EchoServer) -> tuple[str, int]:
    host, port = server.server_address[:2]
    return str(host), int(port)


def _echo(address: tuple[str, int], payload: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `payload` from a thread while reading its echo; return what came back."""
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sender.join(timeout_s)
        return bytes(received)


@pytest.mark.parametrize(("rate", "latency"), [(None, 0.0), (50e6, 0.005)])
def test_bytes_pass_intact_both_ways(echo_server: EchoServer, rate: float | None, latency: float) -> None:
    payload = os.urandom(200_000)
    with LinkRelay(_target(echo_server), rate, latency) as relay:
        assert relay.address == f"127.0.0.1:{relay.port}" and relay.port > 0
        assert _echo(("127.0.0.1", relay.port), payload) == payload
        assert relay.bytes_up == len(payload)
        assert relay.bytes_down == len(payload)


def test_rate_limits_throughput(echo_server: EchoServer) -> None:
    payload = os.urandom(100_000)  # 0.4 s at 2 Mbit/s, in each direction (the two overlap)
    with LinkRelay(_target(echo_server), 2_000_000) as relay:
        start = time.perf_counter()
        assert _echo(("127.0.0.1", relay.port), payload) == payload
        elapsed = time.perf_counter() - start
    assert elapsed >= 0.35


def test_connections_share_the_link(echo_server: EchoServer) -> None:
    payload = os.urandom(50_000)  # two of these: 100 kB one way, 0.4 s at 2 Mbit/s on a shared link
    with LinkRelay(_target(echo_server), 2_000_000) as relay:
        results: list[bytes] = []
        start = time.perf_counter()
        clients = [
            threading.Thread(target=lambda: results.append(_echo(("127.0.0.1", relay.port), payload))) for _ in range(2)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        elapsed = time.perf_counter() - start
    assert results == [payload, payload]
    assert elapsed >= 0.35


def test_latency_delays_each_direction(echo_server: EchoServer) -> None:
    with LinkRelay(_target(echo_server), None, 0.1) as relay:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            start = time.perf_counter()
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            elapsed = time.perf_counter() - start
    assert elapsed >= 0.18


@pytest.mark.parametrize(
    ("target", "listen_host"),
    [
        (("10.0.0.1", 50051), "127.0.0.1"),
        (("192.168.1.20", 50051), "127.0.0.1"),
        (("example.com", 50051), "127.0.0.1"),
        (("0.0.0.0", 50051), "127.0.0.1"),
        (("::ffff:8.8.8.8", 50051), "127.0.0.1"),
        (("127.0.0.1", 50051), "0.0.0.0"),
        (("127.0.0.1", 50051), "::"),
        (("127.0.0.1", 50051), "192.168.1.20"),
        (("127.0.0.1", 50051), ""),
    ],
)
def test_refuses_non_loopback_addresses(target: tuple[str, int], listen_host: str) -> None:
    with pytest.raises(ValueError):
        LinkRelay(target, 1_000_000, listen_host=listen_host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "localhost", "::1"])
def test_accepts_loopback_targets(host: str) -> None:
    LinkRelay((host, 50051), None)  # constructing starts nothing


def test_closing_the_client_closes_the_server_side(echo_server: EchoServer) -> None:
    with LinkRelay(_target(echo_server), 10_000_000, 0.01) as relay:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            sock.sendall(b"hello")
            assert sock.recv(16) == b"hello"
        assert echo_server.wait_until_idle(3.0), "the server-side connection stayed open"
        # A connection still open when the relay stops is closed too, and the relay stops promptly.
        lingering = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
        lingering.sendall(b"x")
        assert lingering.recv(16) == b"x"
        start = time.perf_counter()
    assert time.perf_counter() - start < 3.0
    with lingering:
        assert lingering.recv(16) == b""
    assert echo_server.wait_until_idle(3.0)


def test_parsers() -> None:
    assert link_relay.parse_rate("1Mbit") == 1e6
    assert link_relay.parse_rate("10Mbit") == 10e6
    assert link_relay.parse_rate("500kbit") == 500e3
    assert link_relay.parse_rate("unlimited") is None
    assert link_relay.parse_latency("20ms") == pytest.approx(0.02)
    assert link_relay.parse_latency("0.05s") == pytest.approx(0.05)
    assert link_relay.parse_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert link_relay.parse_address("[::1]:0") == ("::1", 0)
    for bad_rate in ("fast", "-1Mbit", "0"):
        with pytest.raises(ValueError):
            link_relay.parse_rate(bad_rate)
    with pytest.raises(ValueError):
        link_relay.parse_latency("20")  # a unit is required
