"""receiver: listens for senders and writes the images they stream as PNG files."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from latentlink.shared.cli_help import (
    IO_WORKERS,
    HelpFormatter,
    add_version,
    command_runtime,
    quiet_process,
    worker_count,
)
from latentlink.shared.protocol import DEFAULT_PORT

__all__ = ["build_parser", "main"]


def default_models_dir() -> Path:
    """Returns the decoder cache folder: $XDG_CACHE_HOME/latentlink/decoders."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "latentlink" / "decoders"


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: gRPC reads its log settings once, when it is first imported,
    # and `main` sets them first (quiet_process).
    from latentlink.receiver.inbox import DEFAULT_IDLE_TIMEOUT_S

    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Receive latent vectors from senders, decode them, and write PNG images.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  receiver --listen 127.0.0.1:50051 --out received/\n"
        "  receiver --listen 0.0.0.0:50051 --tls-cert cert.pem --tls-key key.pem --token-file token\n"
        "  receiver --listen 127.0.0.1:0 --json --save-as npz    # free port, machine-readable, arrays",
    )
    parser.add_argument(
        "--listen",
        nargs="?",
        const=f"[::]:{DEFAULT_PORT}",
        default=f"[::]:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help="address to listen on (port 0 picks a free one)",
    )
    parser.add_argument("--out", type=Path, default=Path("received"), help="folder for reconstructed images")
    parser.add_argument("--models", type=Path, default=default_models_dir(), help="decoder cache folder")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where the decoder runs")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to let sessions finish on shutdown")
    parser.add_argument(
        "--png-workers",
        type=worker_count,
        default=IO_WORKERS,
        metavar="N",
        help="threads that encode PNGs, shared by all sessions (they use a core each)",
    )
    parser.add_argument(
        "--name",
        help="how this receiver names itself to senders (default: HOSTNAME:PORT); "
        "behind a proxy, a sender reports which receiver holds its images",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT_S,
        help="end a session whose sender sends nothing for this long (s)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="require senders to present the token in this file (default: $LATENTLINK_TOKEN, if set)",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this PEM certificate (needs --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", type=Path, help="mutual TLS: require sender certificates signed by this CA")
    parser.add_argument(
        "--save-as",
        choices=("png", "npz"),
        default="png",
        help="png: one PNG file per image; npz: one array file per batch (images and names), no per-file I/O",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: the address when listening, then a summary per finished session",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    add_version(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_process()
    command_runtime()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s receiver %(levelname)s %(message)s",
    )
    from latentlink.receiver.preflight import (
        PreflightError,
        check_listen_address,
        check_writable_folder,
        explain_bind_failure,
    )
    from latentlink.receiver.server import create_server
    from latentlink.shared.auth import read_token

    try:
        check_listen_address(args.listen)
        check_writable_folder(args.out, "--out")
        check_writable_folder(args.models, "--models")
    except PreflightError as exc:
        print(f"receiver: error: {exc}", file=sys.stderr)
        return 2

    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        print(f"receiver: error: cannot read the token: {exc}", file=sys.stderr)
        return 2
    credentials = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            print("receiver: error: TLS needs both --tls-cert and --tls-key", file=sys.stderr)
            return 2
        from latentlink.shared.tls import server_credentials

        try:
            credentials = server_credentials(args.tls_cert, args.tls_key, args.tls_client_ca)
        except OSError as exc:
            print(f"receiver: error: {exc}", file=sys.stderr)
            return 2

    from latentlink.shared.network_runtime import CPU, preload_cpu_runtime, resolve_device

    try:
        device = resolve_device(args.device)  # imports TensorFlow now for a GPU, not while the first sender waits
    except RuntimeError as exc:
        print(f"receiver: error: {exc}", file=sys.stderr)
        return 2
    from grpc_health.v1 import health

    from latentlink.shared.serde import OutputFormat

    output_format = OutputFormat.NPZ if args.save_as == "npz" else OutputFormat.PNG
    health_service = health.HealthServicer()
    try:
        server, port = create_server(
            args.listen,
            args.out,
            args.models,
            args.device,
            token,
            credentials,
            args.idle_timeout,
            output_format,
            _print_json if args.json else lambda summary: None,
            name=args.name,
            png_workers=args.png_workers,
            health_service=health_service,
        )
    except OSError:
        print(f"receiver: error: {explain_bind_failure(args.listen)}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    # The "listening" line is parsed by tests and the demo to learn the port.
    if args.json:
        _print_json({"event": "listening", "address": f"{host}:{port}", "out": str(args.out.resolve())})
    else:
        print(f"receiver: listening on {host}:{port}, writing to {args.out.resolve()}", flush=True)
    if device == CPU:
        preload_cpu_runtime()  # after the listening line: the receiver accepts as soon as it can
    if credentials is None and not _is_loopback(host):
        print(
            f"receiver: warning: {host} is reachable from other machines and this receiver has no TLS; "
            + ("the token and images travel in the clear" if token else "anyone there can send it images"),
            file=sys.stderr,
            flush=True,
        )
    stop.wait()
    print(f"receiver: shutting down (up to {args.grace:.0f} s for open sessions)", file=sys.stderr, flush=True)
    health_service.enter_graceful_shutdown()  # NOT_SERVING for health checks on open connections
    server.stop(args.grace).wait()  # new connections are refused at once: a proxy routes new sessions elsewhere
    return 0


def _print_json(record: dict) -> None:
    import json

    print(json.dumps(record), flush=True)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    sys.exit(main())
