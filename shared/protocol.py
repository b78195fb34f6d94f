"""Protocol constants and gRPC options shared by sender and receiver."""

from __future__ import annotations

import math
import re

__all__ = [
    "PROTOCOL_VERSION",
    "STREAM_METHOD",
    "BUSY_METADATA",
    "RECEIVER_METADATA",
    "DEFAULT_PORT",
    "MAX_MESSAGE_BYTES",
    "MODEL_CHUNK_BYTES",
    "MAX_BATCH_IMAGES",
    "LARGE_BATCH_IMAGES",
    "DEFAULT_BATCH_IMAGES",
    "MAX_MODEL_BYTES",
    "MAX_DECODER_ACTIVATIONS",
    "MAX_DECODER_MACS",
    "MAX_BATCH_PIXELS",
    "DECODE_BUDGET_ELEMENTS",
    "MAX_NAME_BYTES",
    "MAX_SESSIONS",
    "MAX_SEQUENCE",
    "SENDER_ID",
    "PROXY_GATEWAY",
    "SESSION_HEADER",
    "SESSION_NAME",
    "batch_images_limit",
    "channel_options",
    "server_options",
    "split_host_port",
]

PROTOCOL_VERSION = 2
# The stream's full method name, and the trailing metadata of a receiver refusing for want of a free
# session slot (UNAVAILABLE, worth trying again later, unlike every other refusal before a handshake).
STREAM_METHOD = "/latentlink.v1.LatentLink/Stream"
BUSY_METADATA = ("latentlink-busy", "1")
# Trailing metadata on every status a receiver ends a stream with, its own errors and crashes alike:
# a status without it was made up by the sender's gRPC because the link failed (worth a reconnect).
RECEIVER_METADATA = ("latentlink-receiver", "1")
# Call metadata naming the session on every stream of it, resumes included: a proxy routes on it
# (nginx `hash $http_latentlink_session consistent`), so that a session stays on one receiver.
SESSION_HEADER = "latentlink-session"
# How gRPC words an HTTP 502/503/504 answer: a proxy is there, but not (yet) a receiver behind it for this
# session (its receiver is restarting or draining, and the proxy will route elsewhere once it counts it
# down): worth waiting for, even before any handshake, unlike a target that cannot be reached at all.
PROXY_GATEWAY = re.compile(r"http2 header with status: 50[234]\b")
DEFAULT_PORT = 50051
# Largest single gRPC message either side accepts; latent batches and model
# chunks stay far below it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MODEL_CHUNK_BYTES = 256 * 1024
# Images per batch: up to 4,096 of images small enough that a batch stays within MAX_BATCH_PIXELS (a tiny
# model, the seed's MLP, ran 1.16x faster in batches of 4,096 than of 1,024: bench/RESULTS.md), and 1,024 of
# larger ones, as every receiver took before (batch_images_limit). A sender also splits a batch whose
# message would pass half of the message limit.
MAX_BATCH_IMAGES = 4096
LARGE_BATCH_IMAGES = 1024
# Large enough to amortise per-batch costs (a TensorFlow call, two filesystem flushes), small for latency.
DEFAULT_BATCH_IMAGES = 512
MAX_MODEL_BYTES = 16 * 1024 * 1024
# The most work a decoder may ask for per image (a 28x28 ladder decoder: 27k activations, 1.9 M multiply-adds).
MAX_DECODER_ACTIVATIONS = 1 << 20
MAX_DECODER_MACS = 256 * 1024 * 1024
# Images of any size: the most pixels a batch may hold in all, the largest image a receiver decodes (4 MP,
# e.g. 2560 x 1600; its decoding holds about 0.8 GB of activations with the shipped photo models).
MAX_BATCH_PIXELS = 1 << 22
# Activation elements one decoder call may hold (128 MiB of float32): larger batches are decoded in slices.
DECODE_BUDGET_ELEMENTS = 1 << 25
MAX_NAME_BYTES = 1024
# Image sequence numbers stay below this: a signed 64-bit integer holds them in any language.
MAX_SEQUENCE = 2**63
# Sessions a receiver serves at once (each holds a thread); a sender opens at most this many streams.
MAX_SESSIONS = 32
# A session's folder name: one safe path component.
SESSION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
# A sender's token for taking over its own abandoned stream of a session.
SENDER_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


# A sender pings a quiet connection this often and gives it up when a ping goes unanswered for as long:
# a stalled link (a dead peer, a silent middlebox) ends the stream in seconds, not at the TCP timeout.
KEEPALIVE_MS = 5000


def split_host_port(address: str, lowest_port: int = 0) -> tuple[str, int]:
    """Splits HOST:PORT (IPv6 in brackets) into host and port; raises ValueError saying what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError("the port is required")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("write IPv6 addresses as [ADDRESS]:PORT")
    if not port.isdigit() or not lowest_port <= int(port) <= 65535:
        raise ValueError(f"the port must be {lowest_port}..65535")
    return host.strip("[]"), int(port)


def batch_images_limit(image_shape: tuple[int, ...]) -> int:
    """The most images per batch a receiver takes of a model's image shape (0 in it: images of any size, whose
    batches are bounded by their pixels instead)."""
    pixels = math.prod(image_shape[:2])
    if not pixels:
        return MAX_BATCH_IMAGES
    return max(LARGE_BATCH_IMAGES, min(MAX_BATCH_IMAGES, MAX_BATCH_PIXELS // pixels))


def channel_options() -> list[tuple[str, int]]:
    """Options for the sender's channel."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_MS),
        # Keep pinging while every image is in flight and nothing is left to send (the default stops at 2).
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options() -> list[tuple[str, int]]:
    """Options for the receiver's server: bounded messages, no silent port sharing."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Without this, a second receiver on the same port would start "fine".
        ("grpc.so_reuseport", 0),
        # Senders' keepalive pings are welcome (by default a server answers frequent ones with GOAWAY).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
    ]
