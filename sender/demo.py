"""latentlink-demo: starts a local receiver, sends the sample digits, and checks what it wrote."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentlink.shared.cli_help import HelpFormatter, add_version, command_runtime, quiet_process
from latentlink.shared.resources import package_folder

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentlink-demo",
        description="Run a receiver and a sender on this machine over the sample MNIST digits.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--images", type=Path, default=None, help="images to send (default: the shipped sample digits)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-output"), help="receiver output and cache")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped default)")
    add_version(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_process()
    command_runtime()
    args = build_parser().parse_args(argv)
    args.images = args.images or package_folder("samples", "mnist")
    out, models = args.workdir / "received", args.workdir / "decoders"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "latentlink.receiver",
            "--listen",
            "127.0.0.1:0",
            "--out",
            str(out),
            "--models",
            str(models),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = receiver.stdout.readline()
        match = re.search(r"listening on \S+:(\d+)", line)
        if not match:
            print("latentlink-demo: error: the receiver did not start", file=sys.stderr)
            return 1
        target = f"127.0.0.1:{match.group(1)}"
        print(f"$ receiver --listen {target} --out {out}   (running in the background)")
        print(f"$ sender --target {target} --session demo {os.path.relpath(args.images)}")
        sender_args = ["--target", target, "--session", "demo", str(args.images)]
        sender_args += ["--model", str(args.model)] if args.model else []
        code = subprocess.run([sys.executable, "-m", "latentlink.sender", *sender_args]).returncode
        if code == 0:
            _report_written_quality(args.images, out / "demo")
        return code
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=60)


def _report_written_quality(images: Path, out: Path) -> None:
    """Measures the PNGs the receiver wrote against the originals, as a user would."""
    from latentlink.shared.image_io import read_image
    from latentlink.shared.metrics import quality

    names = sorted(p.relative_to(images) for p in images.rglob("*.png"))
    originals = np.stack([read_image(images / n, (28, 28)) for n in names])
    written = np.stack([read_image(out / n, (28, 28)) for n in names])
    print(f"measured on the {len(names)} PNG files the receiver wrote: {quality(originals, written)}")
    print(f"reconstructions: {out.resolve()}")


if __name__ == "__main__":
    sys.exit(main())
