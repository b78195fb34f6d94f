"""The sender's gRPC channel: one receiver, several, or a DNS name, balanced by gRPC's round_robin."""

from __future__ import annotations

import ipaddress
import json
import socket

import grpc

from latentlink.shared.protocol import channel_options, split_host_port

__all__ = ["CONNECT_WAIT_S", "TargetError", "channel_target", "connected", "open_channel", "start_connecting"]

# Longest wait for a first connection to a target that has not answered yet (a receiver still starting).
CONNECT_WAIT_S = 5.0
# gRPC's own client-side balancing: every new stream goes to the next ready receiver.
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


class TargetError(ValueError):
    """A --target that cannot be used; the message says how to write it."""


def channel_target(target: str) -> tuple[str, str]:
    """Turns a --target into a gRPC target URI, and the host name TLS certificates are checked against.

    "host:port" and gRPC URIs ("dns:///name:port", "ipv4:...") pass through: a
    name with several addresses is balanced across all of them. A comma-separated
    list "host1:port1,host2:port2" becomes one ipv4:/ipv6: URI over every address
    of every host (resolved once, now).
    """
    parts = [part.strip() for part in target.split(",") if part.strip()]
    if not parts:
        raise TargetError("--target is empty; give HOST:PORT, a list HOST:PORT,HOST:PORT or dns:///NAME:PORT")
    if len(parts) == 1:
        _check_single(parts[0])
        return parts[0], ""  # gRPC resolves it, and checks TLS certificates against it
    addresses = [_split(part) for part in parts]  # every part is checked before any is resolved
    resolved = [(address, _resolve(*address)) for address in addresses]
    for family in ("ipv4", "ipv6"):
        if all(any(f == family for f, _ in addresses) for _, addresses in resolved):
            entries: list[str] = []
            for (_, port), addresses in resolved:
                for f, address in addresses:
                    entry = f"{address}:{port}" if family == "ipv4" else f"[{address}]:{port}"
                    if f == family and entry not in entries:
                        entries.append(entry)
            return f"{family}:{','.join(entries)}", resolved[0][0][0]
    raise TargetError(f'"{target}" mixes IPv4-only and IPv6-only receivers; list receivers of one family')


def open_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """Opens a channel to `target` (see channel_target) with round_robin balancing."""
    uri, host = channel_target(target)
    options = [*channel_options(), ("grpc.service_config", ROUND_ROBIN)]
    if credentials is None:
        return grpc.insecure_channel(uri, options=options)
    if host and not _is_ip(host):
        # The receivers' certificates name the hosts, not their resolved addresses.
        options.append(("grpc.ssl_target_name_override", host))
    return grpc.secure_channel(uri, credentials, options=options)


def start_connecting(channel: grpc.Channel) -> None:
    """Starts connecting now, in the background: gRPC would wait for the first call. Over a distant link the
    connection (TCP, then HTTP/2's settings both ways) is then up by the time the sender has listed its inputs.

    gRPC Python's public way, subscribe(try_to_connect=True), starts a polling thread that prints a traceback
    if the channel is closed while it watches (grpc/grpc#18995; a sender that stops at once, on an empty folder,
    closes it within milliseconds). So the one call that thread would make is made here, on gRPC's core channel;
    tests/unit/test_channel_target.py fails if a gRPC release moves it.
    """
    core = getattr(channel, "_channel", None)
    if core is not None and hasattr(core, "check_connectivity_state"):
        core.check_connectivity_state(True)


def connected(channel: grpc.Channel, timeout_s: float) -> bool:
    """Waits up to `timeout_s` for the channel to connect (gRPC retries meanwhile, with backoff); whether it did."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        return False
    return True


def _check_single(part: str) -> None:
    """Refuses what gRPC would quietly misread: no port (it dials 443), ports past 65535 (they wrap), schemes."""
    if part.startswith("unix:"):
        return
    if part.startswith(("dns:", "ipv4:", "ipv6:")):
        scheme, _, rest = part.partition(":")
        if scheme == "dns":
            rest = rest.removeprefix("//").partition("/")[2] if rest.startswith("//") else rest
        for address in rest.split(","):
            _split(address)
        return
    if "://" in part:
        raise TargetError(f'"{part}": give --target as HOST:PORT, without a scheme such as http:// or grpc://')
    _split(part)


def _split(part: str) -> tuple[str, int]:
    try:
        return split_host_port(part, lowest_port=1)
    except ValueError as exc:
        raise TargetError(f'"{part}" in --target is not HOST:PORT: {exc}') from None


def _resolve(host: str, port: int) -> list[tuple[str, str]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f'cannot resolve "{host}" in --target: {exc.strerror}') from None
    return [("ipv4" if info[0] == socket.AF_INET else "ipv6", info[4][0]) for info in infos]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
