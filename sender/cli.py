"""sender: encodes images with the model's encoder and streams the latents to a receiver."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from latentlink.shared.cli_help import (
    READ_WORKERS,
    HelpFormatter,
    add_version,
    command_runtime,
    interrupted,
    quiet_process,
    worker_count,
)
from latentlink.shared.failures import format_failures
from latentlink.shared.model_dir import DEFAULT_PHOTO_QUALITY, DEFAULT_QUALITY, PHOTO_QUALITIES, QUALITIES
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, MAX_BATCH_IMAGES, MAX_SESSIONS, PROXY_GATEWAY, SESSION_NAME
from latentlink.shared.serde import ENCODING_NAMES

# Each stream holds a session slot on a receiver.
MAX_STREAMS = MAX_SESSIONS

__all__ = ["add_effort_argument", "build_parser", "main", "format_report"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: gRPC reads its log settings once, when it is first imported,
    # and `main` sets them first (quiet_process).
    from latentlink.sender.attempt import DEFAULT_HANDSHAKE_TIMEOUT_S
    from latentlink.sender.session import DEFAULT_RETRY_S

    parser = argparse.ArgumentParser(
        prog="sender",
        description="Encode images (a folder, one image, or a .npy/.npz array) and stream them to a receiver.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  sender --target localhost:50051 samples/mnist/\n"
        "  sender --dry-run photos/                                   # bytes and quality, without sending\n"
        "  sender --target rx1:50051,rx2:50051,rx3:50051 --streams 6 digits.npz   # spread over receivers\n"
        "  sender --target dns:///receivers.internal:50051 --streams 8 --json images/\n"
        "  sender --target rx.example:443 --tls-ca ca.pem --token-file token images/",
    )
    parser.add_argument("images", type=Path, help="folder of images (searched recursively), an image, or .npy/.npz")
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="the receiver: HOST:PORT, several as HOST:PORT,HOST:PORT, or dns:///NAME:PORT for every address "
        "of a name (required unless --dry-run)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=1,
        help=f"parallel streams, each its own resumable session, spread over the receivers by gRPC's "
        f"round_robin (1..{MAX_STREAMS})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="encode everything locally and report the expected bytes on the wire and quality; connect to nothing",
    )
    parser.add_argument(
        "--quality",
        type=int,
        choices=QUALITIES,
        default=None,
        help=f"shipped model of a rate-distortion ladder, 1 (smallest) to {QUALITIES[-1]} (best) for 28x28 digits "
        f"(default {DEFAULT_QUALITY}), 1 to {PHOTO_QUALITIES[-1]} for photos (default {DEFAULT_PHOTO_QUALITY}); "
        "the inputs pick the ladder",
    )
    parser.add_argument("--model", type=Path, default=None, help="model folder (instead of --quality)")
    parser.add_argument(
        "--encoding",
        choices=("auto", *ENCODING_NAMES),
        default="auto",
        help="latent wire encoding; auto: entropy-coded (ans) when the model has a prior, else float32. "
        "float16 is lossy on the latents",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_IMAGES,
        help=f"images per message (1..{MAX_BATCH_IMAGES}; a receiver takes as many as hold 4 M pixels, at least "
        "1024: all 4096 of digits). Larger batches pay for tiny models only",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where the encoder runs")
    parser.add_argument(
        "--resize",
        action="store_true",
        help="scale images of another size to fit the model's, keeping the aspect ratio and padding with black "
        "(otherwise they fail)",
    )
    add_effort_argument(parser)
    parser.add_argument(
        "--read-workers",
        type=worker_count,
        default=READ_WORKERS,
        metavar="N",
        help="worker processes that read and decode image files, shared by the --streams (a core each; 1: a thread)",
    )
    parser.add_argument(
        "--min-psnr",
        type=float,
        metavar="DB",
        help="fail, instead of sending, images whose predicted PSNR is below DB (every image is decoded locally)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=DEFAULT_HANDSHAKE_TIMEOUT_S,
        help="seconds to wait for the receiver",
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        default=DEFAULT_RETRY_S,
        help="after a broken stream, keep reconnecting and resuming while the session makes progress; "
        "give up after this many seconds without any",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="file holding the receiver's token (default: $LATENTLINK_TOKEN, if set)",
    )
    parser.add_argument("--tls-ca", type=Path, help="use TLS, trusting this PEM CA (the receiver's certificate issuer)")
    parser.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    parser.add_argument("--tls-cert", type=Path, help="mutual TLS: this sender's PEM certificate")
    parser.add_argument("--tls-key", type=Path, help="mutual TLS: its private key")
    parser.add_argument(
        "--session",
        help="folder name for these images on the receiver (default: the input's name, time and a random "
        "suffix); a rerun with the same session sends only the images not already there",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_version(parser)
    return parser


def add_effort_argument(parser: argparse.ArgumentParser) -> None:
    """--effort, as the sender and `latentlink compress` take it."""
    from latentlink.sender.search import EFFORTS

    parser.add_argument(
        "--effort",
        type=int,
        choices=EFFORTS,
        default=0,
        help="search each image's latents for a better size/quality trade under the same decoder: digit models, "
        "1 gives about 1 dB more at the same size for ~10 ms of sender CPU per image; photo models (with "
        "TensorFlow), 1 gives 0.3-0.5 dB more at 1-2.5%% fewer bits for ~6 s per 768x512 photo on 2 cores, 2 a "
        "little more for 3x that; 0 rounds",
    )


def format_report(report, target: str, model) -> str:
    """Renders the end-of-session summary for people."""
    sent = max(report.sent, 1)
    lines = [
        f"{report.images} images, {report.sent} sent to {target} in {report.elapsed_s:.1f} s: "
        f"{len(report.written)} written, {len(report.failed)} failed",
        f"  model {model.name} (decoder {model.decoder.digest[:12]}): {report.model_bytes} model bytes transferred"
        + (" (receiver had it cached)" if report.model_bytes == 0 and report.written else ""),
        f"  wire ({report.encoding or 'no'} latents): {report.payload_bytes / sent:.1f} B of latents "
        "per image, "
        f"{report.wire_bytes / sent:.1f} B per image with names, framing and acks "
        f"(input files: {report.input_bytes / max(len(report.input_sizes), 1):.0f} B per image)"
        + _bits_per_pixel(report, model),
    ]
    for index, stream in enumerate(report.streams, 1):
        lines.append(
            f'  stream {index}: {len(stream.written)}/{stream.images} written into "{stream.session_dir}/"'
            + _on(stream.placement())
            + (f", {stream.reconnects} reconnect(s)" if stream.reconnects else "")
            + (f", {stream.model_bytes} model bytes" if stream.model_bytes else "")
            + (f": {stream.error}" if stream.error else "")
        )
    if report.already_in_place:
        lines.append(
            f"  {report.already_in_place} images were already in place from an earlier run of this session "
            "(same name, same latents): not sent again"
        )
    if report.reconnects:
        lines.append(f"  the stream broke and was resumed {report.reconnects} time(s); each image counted once")
    if report.resent_batches:
        lines.append(f"  {report.resent_batches} batch(es) arrived corrupt and were sent again")
    if report.expected_quality is not None:
        basis = "all" if report.quality_images >= len(report.written) else "a systematic sample of"
        lines.append(
            f"  expected quality of the reconstructions: {report.expected_quality} "
            f"(predicted on {basis} {report.quality_images} images)"
        )
    placement = report.placement()
    if report.moved and not report.streams:
        lines.append(
            f"  after a failover, this session's images are on {len(placement)} receivers, each image counted on the "
            "one that acknowledged it (--json lists the names):"
        )
        for receiver, names in placement.items():
            lines.append(f'    {len(names)} on {receiver or "?"} in "{report.session_dir}/"')
    elif report.written:
        where = "the receivers' output folders, a folder per stream" if report.streams else "its output folder"
        lines.append(
            f'  reconstructions are in "{report.session_dir}/" under {where}'
            + ("" if report.streams else _on(placement))
        )
    return "\n".join(lines + format_failures(report.failed))


def input_notes(report, resized: int, shape: tuple[int, ...]) -> list[str]:
    """Summary lines on what was done to the input: files left out of the folder, images resized."""
    from latentlink.shared.image_io import summarize_skipped

    lines = []
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)} files of the folder: {summarize_skipped(report.skipped)}")
    if resized:
        lines.append(
            f"  --resize: {resized} images scaled to fit {shape[1]}x{shape[0]}, aspect ratio kept, padded with black"
        )
    return lines


def out_of_domain_warning(
    found: dict[str, float], model, prog: str = "sender", hint: str = "--min-psnr DB fails such images instead"
) -> str | None:
    """A warning for images predicted far under the model's own test quality: they are not what it was made for."""
    from latentlink.sender.encode import OUT_OF_DOMAIN_DB

    if not found:
        return None
    worst = sorted(found.items(), key=lambda item: item[1])
    examples = ", ".join(f"{name} ({value:.1f} dB)" for name, value in worst[:3])
    return (
        f"{prog}: warning: {len(worst)} images are predicted far below model {model.name}'s "
        f"{model.card['test']['psnr_db']:.1f} dB on its test set (more than {OUT_OF_DOMAIN_DB:g} dB under): they look "
        f"unlike the images it was trained on, e.g. {examples}. {hint}"
    )


def explain_failure(failure, target: str, tls: bool) -> str:
    """Says why a session ended early, with what to do about it."""
    code, details = failure.status, failure.details
    lowered = details.lower()
    if code == "PROTOCOL":
        return details
    if not failure.reached and ("handshake failed" in lowered or "ssl" in lowered):
        return f"TLS handshake with {target} failed ({details}); check --tls-ca / --tls-cert / --tls-key"
    if failure.busy:
        return f"{target} kept all its session slots busy until --retry-for ran out; try later or add receivers"
    if code == "UNAVAILABLE" and not failure.reached:
        hint = "" if tls else "; if it uses TLS, pass --tls-ca"
        if PROXY_GATEWAY.search(details):
            return f"the proxy at {target} reached no receiver for this session ({details}) until --retry-for ran out"
        return f"cannot reach a receiver at {target} ({details}); is `receiver --listen` running there{hint}?"
    if code == "UNAUTHENTICATED":
        return f"{target} refused the token: {details}"
    if code == "UNIMPLEMENTED":
        return f"{target} is not a latentlink receiver (it does not implement the stream)"
    if code == "CANCELLED" and not failure.reached:
        return f"no handshake from {target} in time; is it a latentlink receiver?"
    return f"receiver ended the session: {code}: {details}"


def _progress_bar(images: int, doing: str):
    from tqdm import tqdm  # imported only for a bar (~15 ms)

    return tqdm(total=images, unit="img", file=sys.stderr, desc=doing, dynamic_ncols=True)


def progress_meter(bar) -> Callable[[int, int], None]:
    """A progress callback that advances `bar` by images and shows the bytes on the wire so far (None: no bar)."""
    if bar is None:
        return lambda images, wire_bytes: None
    lock, total = threading.Lock(), [0]

    def advance(images: int, wire_bytes: int) -> None:
        with lock:
            total[0] += wire_bytes
            bar.set_postfix_str(f"{_size(total[0])} on the wire", refresh=False)
            bar.update(images)

    return advance


def _bits_per_pixel(report, model) -> str:
    """For images of any size, what image codecs are compared by: bits on the wire per pixel."""
    bpp = report.wire_bits_per_pixel
    return f"; {bpp:.3f} bits per pixel" if bpp is not None and model.encoder.any_size else ""


def format_dry_run(report, model) -> str:
    """Renders what `--dry-run` predicts."""
    readable = max(report.sent, 1)
    lines = [
        f"dry run: {report.images} images, {report.sent} would be sent, {len(report.failed)} would fail; "
        "nothing was sent",
        f"  model {model.name} (decoder {model.decoder.digest[:12]}): a receiver without this decoder first "
        f"receives {_size(report.model_bytes)} once",
        f"  wire ({report.encoding} latents): {report.payload_bytes / readable:.1f} B of latents per image, "
        f"{report.wire_bytes / readable:.1f} B per image with names, framing and acks, "
        f"{_size(report.wire_bytes)} in all (input files: {_size(report.input_bytes)})"
        + _bits_per_pixel(report, model),
    ]
    if report.expected_quality is not None:
        lines.append(f"  expected quality of the reconstructions: {report.expected_quality}")
    return "\n".join(lines + format_failures(report.failed, verb="WOULD FAIL"))


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"


def _on(placement: dict[str, list[str]]) -> str:
    """Where a session's images are: " on RECEIVER", or several receivers with their counts."""
    if len(placement) > 1:
        return " on " + ", ".join(f"{receiver or '?'} ({len(names)})" for receiver, names in placement.items())
    return f" on {next(iter(placement))}" if placement and next(iter(placement)) else ""


def _report_json(report, target: str | None, model) -> str:
    quality = report.expected_quality
    placement = report.placement()
    return json.dumps(
        {
            "target": target,
            "session_dir": report.session_dir,
            "model": model.name,
            "decoder_digest": model.decoder.digest,
            "images": report.images,
            "sent": report.sent,
            "written": len(report.written),
            "receivers": {receiver: len(names) for receiver, names in placement.items()},
            # after a failover behind a proxy, more than one receiver: which names each one wrote
            "written_on": placement if report.moved else {},
            "already_in_place": report.already_in_place,
            "resent_batches": report.resent_batches,
            "failed": report.failed,
            "model_bytes": report.model_bytes,
            "encoding": report.encoding,
            "payload_bytes": report.payload_bytes,
            "wire_bytes": report.wire_bytes,
            "wire_bits_per_pixel": report.wire_bits_per_pixel,
            "input_bytes": report.input_bytes,
            "skipped": report.skipped,
            "out_of_domain": report.out_of_domain,
            "expected": None
            if quality is None
            else {"mse": quality.mse, "rmse": quality.rmse, "psnr_db": quality.psnr, "images": report.quality_images},
            "elapsed_s": report.elapsed_s,
            "dry_run": target is None,
            "streams": [
                {
                    "session_dir": stream.session_dir,
                    "images": stream.images,
                    "written": len(stream.written),
                    "receivers": {receiver: len(names) for receiver, names in stream.placement().items()},
                    "failed": len(stream.failed),
                    "model_bytes": stream.model_bytes,
                    "reconnects": stream.reconnects,
                    "error": stream.error,
                }
                for stream in report.streams
            ],
            "first_sent_at": report.first_sent_at,
            "first_written_at": report.first_written_at,
            "reconnects": report.reconnects,
            "error": None if report.failure is None else explain_failure(report.failure, target or "", False),
        },
        indent=2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    quiet_process()
    command_runtime()
    args = build_parser().parse_args(argv)
    from latentlink.shared.network_runtime import gpu_present
    from latentlink.shared.tf_import import import_in_background, protect_stderr, settle_import

    # The CPU runs LiteRT or numpy, without TensorFlow.
    if args.device == "gpu" or (args.device == "auto" and gpu_present()):
        protect_stderr()  # TensorFlow is imported in the background while the files are listed and the session starts
        import_in_background()
    try:
        return _main(args)
    except KeyboardInterrupt:  # the read workers never see it (read_ahead.py)
        if args.session is None or args.dry_run:
            return interrupted("sender")
        finish = f"send again with --session {args.session} to finish (what is in place is not sent twice)"
        return interrupted("sender", finish)
    finally:
        settle_import()  # ending during the import could abort in TensorFlow's teardown


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="sender %(levelname)s %(message)s")
    if not args.dry_run and not args.target:
        return _fail("--target HOST:PORT is required (or use --dry-run)")
    if not 1 <= args.streams <= MAX_STREAMS:
        return _fail(f"--streams must be between 1 and {MAX_STREAMS}")
    if args.target:
        from latentlink.sender.channel import TargetError, channel_target

        try:
            channel_target(args.target)
        except TargetError as exc:
            return _fail(str(exc))
    if not 1 <= args.batch_size <= MAX_BATCH_IMAGES:
        return _fail(f"--batch-size must be between 1 and {MAX_BATCH_IMAGES}")
    if args.session is not None and not SESSION_NAME.fullmatch(args.session):
        return _fail(f'--session "{args.session}" must be 1-64 of [A-Za-z0-9._-], not starting with a dot')
    if not args.dry_run and args.session is None:  # named now: an interrupted run says how to finish it
        from latentlink.sender.session import new_session_name

        args.session = new_session_name(args.images.stem)
    if args.model and args.quality:
        return _fail("give --model or --quality, not both")
    from latentlink.shared.auth import read_token

    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the token: {exc}")
    credentials = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        from latentlink.shared.tls import channel_credentials

        try:
            credentials = channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            return _fail(str(exc))
    channel = None if args.dry_run else _connecting(args.target, credentials)
    with channel or nullcontext():  # the run may end before the send takes it over (closing twice is harmless)
        return _prepare_and_send(args, credentials, token, channel)


def _connecting(target: str, credentials):
    """The channel to the receiver, connecting while the inputs are listed and the model chosen."""
    from latentlink.sender.channel import open_channel, start_connecting

    channel = open_channel(target, credentials)
    start_connecting(channel)
    return channel


def _prepare_and_send(args, credentials, token, channel) -> int:
    """Chooses the model, encodes and sends (or dry-runs); returns the exit code."""
    from latentlink.shared.image_io import FitResize, ImageError
    from latentlink.shared.model_choice import choose_model
    from latentlink.shared.model_format import ModelFormatError

    resizer, skipped = FitResize() if args.resize else None, {}
    try:
        model, sources, chosen = choose_model([args.images], args.model, args.quality, resizer, skipped)
    except (OSError, ImageError, ModelFormatError, ValueError) as exc:
        return _fail(str(exc))

    from latentlink.sender.encode import BatchEncoder

    try:
        encoder = BatchEncoder(model, args.device, args.effort)
    except RuntimeError as exc:
        return _fail(str(exc))
    try:
        return _send(args, encoder, model, sources, chosen, skipped, resizer, credentials, token, channel)
    finally:
        encoder.settle()


def _send(args, encoder, model, sources, chosen, skipped, resizer, credentials, token, channel) -> int:
    """Sends (or dry-runs) and reports; returns the exit code."""
    from latentlink.sender.parallel import send_parallel

    encodings = None if args.encoding == "auto" else [ENCODING_NAMES[args.encoding]]
    if args.encoding == "ans" and encoder.tables is None:
        return _fail(f'model "{model.name}" has no entropy model; use --encoding float32 or a --quality model')
    watched = not (args.quiet or args.json) and sys.stderr.isatty()  # a bar only where a person watches
    with _progress_bar(len(sources), "encoding" if args.dry_run else "sending") if watched else nullcontext() as bar:
        if args.dry_run:
            from latentlink.sender.dry_run import dry_run
            from latentlink.shared.serde import supported_encodings

            encoding = (encodings or supported_encodings(encoder.tables))[0]
            report = dry_run(sources, encoder, encoding, args.batch_size, progress_meter(bar), args.min_psnr)
        else:
            report = send_parallel(
                args.target,
                sources,
                encoder,
                args.streams,
                args.session,
                credentials,
                channel,
                batch_size=args.batch_size,
                handshake_timeout=args.handshake_timeout,
                on_progress=progress_meter(bar),
                encodings=encodings,
                token=token,
                retry_for=args.retry_for,
                min_psnr=args.min_psnr,
                read_workers=args.read_workers,
            )
    report.skipped = skipped

    def explain(failure) -> str:
        return explain_failure(failure, args.target, credentials is not None)

    notes = input_notes(report, resizer.count if resizer else 0, model.image_shape) + (
        [f"  {chosen}"] if chosen else []
    )
    warning = out_of_domain_warning(report.out_of_domain, model)
    if args.dry_run:
        print(_report_json(report, None, model) if args.json else "\n".join([format_dry_run(report, model), *notes]))
    elif args.json:
        print(_report_json(report, args.target, model))
    elif report.failure and report.sent == 0:
        # Nothing left this machine: one line says why, instead of a list of every image.
        print(f"sender: error: {explain(report.failure)} ({report.images} images not sent)", file=sys.stderr)
        return EXIT_FAILED
    else:
        print("\n".join([format_report(report, args.target, model), *notes]), flush=True)
        if report.failure:
            print(f"sender: error: {explain(report.failure)}", file=sys.stderr)
    if warning and not args.json:
        print(warning, file=sys.stderr)
    if args.dry_run:
        return EXIT_OK if not report.failed else EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


def _fail(message: str) -> int:
    print(f"sender: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
