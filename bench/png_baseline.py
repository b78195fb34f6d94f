"""The baseline latentlink is measured against: stream the PNG files themselves over gRPC.

What a user would do without latentlink. Same harness as latentlink: one
bidirectional gRPC stream, batches of `--batch-size` images, at most
`UNACKED_BATCHES` batches unacknowledged, the same durable group-commit writes
and safe output paths on the receiving side, the same JSON summary fields.
Array inputs (.npy/.npz) are PNG-encoded by the sender first, as a user would.

    python bench/png_baseline.py receive --listen 127.0.0.1:0 --out /tmp/received
    python bench/png_baseline.py send --target 127.0.0.1:PORT images/

Wire format (raw bytes, no .proto, since nothing but this benchmark speaks it):
a batch is <u8 first_seq, <u4 count, <u4 len(names), zlib(NUL-joined names),
count x <u4 file lengths, the files; count 0 ends the stream. An ack is
<u8 first_seq, <u4 count, <u4 failed.
"""

from __future__ import annotations

import argparse
import json
import queue
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from latentlink.receiver.output import UnsafeNameError, output_path, write_files_durably  # noqa: E402
from latentlink.sender.attempt import UNACKED_BATCHES  # noqa: E402
from latentlink.sender.session import new_session_name  # noqa: E402
from latentlink.shared.image_io import ImageError, encode_png, find_sources, output_name  # noqa: E402
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, channel_options, server_options  # noqa: E402

METHOD = "/latentlink.bench.PngBaseline/Stream"
_HEADER = struct.Struct("<QII")


def pack_batch(first_seq: int, names: list[str], files: list[bytes]) -> bytes:
    """Frames a batch of named files (an empty one ends the stream)."""
    packed_names = zlib.compress("\0".join(names).encode(), 9)
    lengths = np.array([len(f) for f in files], "<u4").tobytes()
    return _HEADER.pack(first_seq, len(names), len(packed_names)) + packed_names + lengths + b"".join(files)


def unpack_batch(data: bytes) -> tuple[int, list[str], list[bytes]]:
    """Inverse of pack_batch; raises ValueError on a malformed batch."""
    first_seq, count, names_size = _HEADER.unpack_from(data)
    offset = _HEADER.size + names_size
    names = zlib.decompress(data[_HEADER.size : offset]).decode().split("\0") if count else []
    lengths = np.frombuffer(data, "<u4", count, offset).astype(np.int64)
    ends = offset + 4 * count + np.cumsum(lengths)
    if len(names) != count or (count and ends[-1] != len(data)):
        raise ValueError("malformed batch")
    files = [data[end - size : end] for end, size in zip(ends.tolist(), lengths.tolist(), strict=True)]
    return first_seq, names, files


def serve(listen: str, out: Path, session_log) -> tuple[grpc.Server, int]:
    """Starts a baseline receiver writing each stream's files under out/<session>/."""
    out.mkdir(parents=True, exist_ok=True)

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        session = dict(context.invocation_metadata()).get("session", "baseline")
        written = write_s = 0.0
        for data in requests:
            first_seq, names, files = unpack_batch(data)
            if not names:
                session_log({"event": "session", "session": session, "written": int(written), "write_s": write_s})
                return
            started = time.perf_counter()
            targets, failed = [], 0
            for name, payload in zip(names, files, strict=True):
                try:
                    targets.append((output_path(out, f"{session}/{name}"), payload))
                except UnsafeNameError:
                    failed += 1
            failed += len(write_files_durably(targets))
            written += len(names) - failed
            write_s += time.perf_counter() - started
            yield _HEADER.pack(first_seq, len(names), failed)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=server_options())
    handler = grpc.stream_stream_rpc_method_handler(stream)
    service, method = METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
    port = server.add_insecure_port(listen)
    server.start()
    return server, port


def send(target: str, images: Path, batch_size: int = DEFAULT_BATCH_IMAGES) -> dict:
    """Streams the images under `images` as PNG files; returns the summary latentlink's sender gives."""
    sources = find_sources(images, (28, 28))
    is_array = images.suffix.lower() in (".npy", ".npz")
    started = time.perf_counter()
    report = {"images": len(sources), "written": 0, "failed": 0, "wire_bytes": 0, "payload_bytes": 0}
    report |= {"first_sent_at": None, "first_written_at": None}
    window = threading.Semaphore(UNACKED_BATCHES)
    outgoing: queue.Queue = queue.Queue(maxsize=UNACKED_BATCHES)

    def produce() -> None:
        for first in range(0, len(sources), batch_size):
            names, files = [], []
            for source in sources[first : first + batch_size]:
                try:
                    files.append(encode_png(source.load()) if is_array else Path(images, source.name).read_bytes())
                except (OSError, ImageError):
                    report["failed"] += 1
                    continue
                names.append(output_name(source.name))
            window.acquire()
            message = pack_batch(first, names, files)
            report["wire_bytes"] += 5 + len(message)
            report["payload_bytes"] += sum(len(f) for f in files)
            outgoing.put(message)
            report["first_sent_at"] = report["first_sent_at"] or time.time()
        outgoing.put(pack_batch(0, [], []))
        outgoing.put(None)

    threading.Thread(target=produce, daemon=True).start()
    channel = grpc.insecure_channel(target, options=channel_options())
    call = channel.stream_stream(METHOD)(
        iter(outgoing.get, None), metadata=[("session", new_session_name(images.stem))]
    )
    for ack in call:
        report["wire_bytes"] += 5 + len(ack)
        _, count, failed = _HEADER.unpack(ack)
        report["written"] += count - failed
        report["failed"] += failed
        report["first_written_at"] = report["first_written_at"] or time.time()
        window.release()
    report["elapsed_s"] = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    receive = commands.add_parser("receive", help="run a baseline receiver")
    receive.add_argument("--listen", default="127.0.0.1:0")
    receive.add_argument("--out", type=Path, required=True)
    sender = commands.add_parser("send", help="stream a folder or array as PNG files")
    sender.add_argument("--target", required=True)
    sender.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_IMAGES)
    sender.add_argument("images", type=Path)
    args = parser.parse_args(argv)
    if args.command == "send":
        report = send(args.target, args.images, args.batch_size)
        print(json.dumps(report))
        return 0 if report["written"] == report["images"] else 1
    server, port = serve(args.listen, args.out, lambda record: print(json.dumps(record), flush=True))
    print(json.dumps({"event": "listening", "address": f"127.0.0.1:{port}"}), flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
