"""Reading and PNG encoding on 1, 2, ... worker threads: the sender's read stage and the receiver's PNG stage alone.

Both stages run libpng through imagecodecs without the GIL, so each worker
thread can use a core of its own. For each worker count the table gives
images/s and megapixels/s of the stage on its own (wall clock, best of
`--repeats`), and the speed-up over one worker measured in the same run:

- sender: read (files -> uint8 arrays), `sender.read_ahead.ReadAhead` as a
  session runs it (batches of 512 digits, or 8 photos), its workers' start-up
  included: digits in worker processes, photos in threads;
- receiver: encode PNG, `receiver.png_workers.PngWorkers` as a session runs
  it (digits: a batch at a time, cut over the workers; photos, one per batch:
  one per writer thread), without the durable write.

    python bench/io_workers.py --data ../shared/data/mnist.npz --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from latentlink.receiver.png_workers import PngWorkers
from latentlink.sender.attempt import PHOTO_READ_IMAGES
from latentlink.sender.read_ahead import ReadAhead
from latentlink.shared.cli_help import command_runtime
from latentlink.shared.image_io import ANY_SIZE, encode_png, find_sources, is_any_size
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES
from latentlink.train.mnist import load_mnist

REPO = Path(__file__).resolve().parents[1]


def digit_folder(work: Path, data: Path | None, count: int) -> Path:
    """`count` MNIST digits as PNG files (cached in `work`)."""
    folder = work / f"png-{count}"
    if not (folder / f"{count - 1:05d}.png").exists():
        train, test = load_mnist(data)
        digits = np.concatenate([test, train])
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"{i:05d}.png").write_bytes(encode_png(digits[i]))
    return folder


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def read_stage(
    folder: Path, shape: tuple[int, ...], batch: int, workers: int, repeats: int, rounds: int = 1
) -> tuple[int, int, float]:
    """A session's reader over the folder (`rounds` times over), worker start-up included."""
    sources = find_sources(folder, shape) * rounds
    batches = [sources[i : i + batch] for i in range(0, len(sources), batch)]
    pixels = sum(int(np.prod(s.load().shape[:2])) for s in sources)

    def run() -> None:
        for _ in ReadAhead(batches, depth=2, workers=workers, any_size=is_any_size(shape)):  # as the sender reads
            pass

    return len(sources), pixels, best_of(repeats, run)


def png_stage(images: list[np.ndarray], batch: int, workers: int, repeats: int) -> tuple[int, int, float]:
    """Digits: a batch at a time, cut over the workers. Photos (batch 1): one per writer thread, as many as workers."""
    encoder = PngWorkers(workers)
    pixels = sum(int(np.prod(image.shape[:2])) for image in images)

    def run() -> None:
        if batch == 1:
            with ThreadPoolExecutor(workers) as writers:
                list(writers.map(lambda image: encoder.encode([image]), images))
            return
        for first in range(0, len(images), batch):
            encoder.encode(images[first : first + batch])

    return len(images), pixels, best_of(repeats, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST or Keras)")
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "kodak")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "latentlink-bench")
    parser.add_argument("--digits", type=int, default=60_000)
    parser.add_argument("--photo-rounds", type=int, default=4, help="read and encode the Kodak images this many times")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    command_runtime()
    args.work.mkdir(parents=True, exist_ok=True)
    digits = digit_folder(args.work, args.data, args.digits)
    photos = sorted(args.photos.glob("*.png"))
    decoded_digits = [s.load() for s in find_sources(digits, (28, 28))]
    decoded_photos = [s.load() for s in find_sources(args.photos, ANY_SIZE)] * args.photo_rounds
    cases = [
        (
            "sender: read",
            f"{args.digits:,} MNIST PNGs",
            lambda w: read_stage(digits, (28, 28), DEFAULT_BATCH_IMAGES, w, args.repeats),
        ),
        (
            "sender: read",
            f"{len(photos)} Kodak PNGs x {args.photo_rounds}",
            lambda w: read_stage(args.photos, ANY_SIZE, PHOTO_READ_IMAGES, w, args.repeats, args.photo_rounds),
        ),
        (
            "receiver: encode PNG",
            f"{args.digits:,} digits",
            lambda w: png_stage(decoded_digits, DEFAULT_BATCH_IMAGES, w, args.repeats),
        ),
        (
            "receiver: encode PNG",
            f"{len(photos)} Kodak images x {args.photo_rounds}",
            lambda w: png_stage(decoded_photos, 1, w, args.repeats),
        ),
    ]
    print(f"cores: {len(os.sched_getaffinity(0))}\n")
    print("| stage | inputs | workers | images/s | megapixels/s | × 1 worker |")
    print("|---|---|---|---|---|---|")
    for stage, inputs, measure in cases:
        base = None
        for workers in args.workers:
            count, pixels, seconds = measure(workers)
            base = base or seconds
            print(
                f"| {stage} | {inputs} | {workers} | {count / seconds:,.0f} | {pixels / seconds / 1e6:,.1f} "
                f"| {base / seconds:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
