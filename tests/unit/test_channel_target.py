"""The sender's --target: one receiver, a list balanced by round_robin, or a DNS name; connecting early; and
stream splitting."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from latentlink.sender.channel import TargetError, channel_target, open_channel, start_connecting
from latentlink.sender.parallel import name_clashes, split_evenly


def test_single_targets_and_grpc_uris_pass_through():
    assert channel_target("receiver.example:50051") == ("receiver.example:50051", "")
    assert channel_target("dns:///receivers.internal:50051") == ("dns:///receivers.internal:50051", "")


def test_a_list_becomes_one_uri_over_every_address_and_keeps_the_first_host_for_tls():
    uri, tls_name = channel_target("localhost:50051, 127.0.0.1:50052,127.0.0.1:50052")
    assert uri == "ipv4:127.0.0.1:50051,127.0.0.1:50052" and tls_name == "localhost"
    assert channel_target("[::1]:1,[::1]:2") == ("ipv6:[::1]:1,[::1]:2", "::1")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "empty"),
        ("a:1,b", '"b" in --target is not HOST:PORT'),
        ("a:1,b:99999", "not HOST:PORT"),
        ("127.0.0.1:1,no-such-host.invalid:2", 'cannot resolve "no-such-host.invalid"'),
        ("127.0.0.1:1,[::1]:2", "mixes IPv4-only and IPv6-only"),
        # A single target gRPC would misread: port 443 for none, 99999 wrapped to 34463, a scheme as a host name.
        ("localhost", '"localhost" in --target is not HOST:PORT: the port is required'),
        ("127.0.0.1:99999", "the port must be 1..65535"),
        ("127.0.0.1:0", "the port must be 1..65535"),
        ("http://host:50051", "without a scheme"),
        ("dns:///receivers.internal", "the port is required"),
        ("::1", "write IPv6 addresses as"),
    ],
)
def test_unusable_targets_say_how_to_write_them(target, message):
    with pytest.raises(TargetError, match=message.replace("(", r"\(")):
        channel_target(target)


@pytest.mark.parametrize(("count", "parts"), [(10, 3), (3, 5), (1, 1), (1000, 7)])
def test_split_evenly_keeps_order_and_balances(count, parts):
    items = list(range(count))
    slices = split_evenly(items, parts)
    assert [x for part in slices for x in part] == items
    assert len(slices) == min(count, parts) and max(map(len, slices)) - min(map(len, slices)) <= 1


def test_images_that_would_write_the_same_output_file_are_caught_before_sending():
    from latentlink.shared.image_io import SourceImage

    names = ["a.jpg", "a.png", "b.png", "sub/a.png", "a"]
    sources = [SourceImage(name, lambda key: None, name) for name in names]
    clashes = name_clashes(sources)
    assert sorted(clashes) == ["a", "a.png"]
    assert clashes["a.png"] == 'would overwrite "a.png", the output of "a.jpg"; rename one'


def _becomes_ready(channel: grpc.Channel, wait_s: float) -> bool:
    """Whether the channel reaches READY within `wait_s`, watched without asking it to connect."""
    ready = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            ready.set()

    channel.subscribe(watch, try_to_connect=False)
    try:
        return ready.wait(wait_s)
    finally:
        channel.unsubscribe(watch)


def test_start_connecting_connects_before_any_call():
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with open_channel(f"127.0.0.1:{port}") as lazy:
            assert not _becomes_ready(lazy, 0.5)  # gRPC on its own waits for the first call
        with open_channel(f"127.0.0.1:{port}") as channel:
            start_connecting(channel)
            assert _becomes_ready(channel, 10.0)
    finally:
        server.stop(None)


def test_a_channel_closed_at_once_after_start_connecting_leaves_no_error_behind(monkeypatch):
    """A sender that stops at once (an empty folder) closes its channel milliseconds after it started connecting;
    gRPC's connectivity polling thread raised into stderr then (16 of 20 channels)."""
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    for _ in range(20):
        channel = open_channel("127.0.0.1:9")
        start_connecting(channel)
        channel.close()
    time.sleep(0.5)  # a polling thread would be done watching by now
    assert errors == []
