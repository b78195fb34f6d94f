"""Several sessions at once: the images split over parallel streams that gRPC balances over receivers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import grpc

from latentlink.sender.channel import CONNECT_WAIT_S, connected, open_channel
from latentlink.sender.encode import BatchEncoder
from latentlink.sender.report import SendReport, merge_reports
from latentlink.sender.session import send_images
from latentlink.shared.image_io import SourceImage, output_name

__all__ = ["name_clashes", "send_parallel", "split_evenly"]

# Time for the channel to finish connecting to every receiver after the first answered.
SETTLE_S = 0.25


def split_evenly(sources: Sequence[SourceImage], parts: int) -> list[Sequence[SourceImage]]:
    """Cuts `sources` into at most `parts` contiguous, non-empty slices whose sizes differ by at most one."""
    parts = max(1, min(parts, len(sources)))
    size, extra = divmod(len(sources), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [sources[bounds[i] : bounds[i + 1]] for i in range(parts)]


def send_parallel(
    target: str,
    sources: Sequence[SourceImage],
    encoder: BatchEncoder,
    streams: int,
    session: str,
    credentials: grpc.ChannelCredentials | None = None,
    opened: grpc.Channel | None = None,
    **options,
) -> SendReport:
    """Sends `sources` over `streams` parallel streams of one round_robin channel.

    Each stream is its own resumable session, named "<session>.<i>" (just
    `session` when there is one stream); gRPC's round_robin policy gives each new
    stream to the next ready receiver behind `target`. `opened`: a channel to `target` opened already
    (connecting since channel.start_connecting), which this takes over and closes. `options` go to send_images.
    """
    clashes = name_clashes(sources)
    if clashes:
        sources = [s for s in sources if s.name not in clashes]
    parts = split_evenly(sources, streams)
    if len(parts) == 1:
        report = send_images(
            target, sources, encoder, session=session, credentials=credentials, opened=opened, **options
        )
        return _with_clashes(report, clashes)
    # the read workers are the sender's, shared by its streams
    options["read_workers"] = max(1, options.get("read_workers", 1) // len(parts))
    reports: list[SendReport | None] = [None] * len(parts)
    with opened or open_channel(target, credentials) as channel:
        _connect(channel, min(options.get("handshake_timeout", 20.0), CONNECT_WAIT_S))

        def run(index: int) -> None:
            reports[index] = send_images(
                target,
                parts[index],
                encoder,
                session=f"{session}.{index + 1}",
                credentials=credentials,
                channel=channel,
                **options,
            )

        threads = [threading.Thread(target=run, args=(i,), name=f"stream-{i + 1}") for i in range(len(parts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return _with_clashes(merge_reports([r for r in reports if r is not None], session), clashes)


def name_clashes(sources: Sequence[SourceImage]) -> dict[str, str]:
    """Images whose output file another image already takes ("a.jpg" and "a.png" both write "a.png")."""
    first: dict[str, str] = {}
    clashes: dict[str, str] = {}
    for source in sources:
        written_as = output_name(source.name)
        if written_as in first:
            clashes[source.name] = f'would overwrite "{written_as}", the output of "{first[written_as]}"; rename one'
        else:
            first[written_as] = source.name
    return clashes


def _with_clashes(report: SendReport, clashes: dict[str, str]) -> SendReport:
    report.images += len(clashes)
    report.failed.update(clashes)
    return report


def _connect(channel: grpc.Channel, timeout_s: float) -> None:
    """Connects the channel to every receiver it can before the first stream is opened.

    round_robin picks only among connected receivers, and starts a new rotation
    whenever one connects: streams opened after the connections settle go to
    the receivers in turn. A target that does not answer is left to the streams
    themselves, which report it.
    """
    if connected(channel, timeout_s):
        time.sleep(SETTLE_S)
