"""Encoder and decoder throughput of the shipped MNIST models on this machine's CPU: numpy against TensorFlow.

Runs each model half through every runtime (LiteRT: what the sender and the
receiver use on the CPU for fixed-size networks; numpy: for the rest, the photo
models; TensorFlow: what they use on a GPU, run here on the CPU for comparison)
over the 10,000 MNIST test images, best of 3, and puts each network's
multiply-adds per second, in the runtime the commands pick, next to what the
machine's BLAS does on a large float32 matrix product in the same run. numpy
runs twice: as a library gets it (BLAS's threads, the batch in one piece) and
as the commands run it (`command_runtime`: BLAS on one thread, the batch cut
over a thread per core); LiteRT as the commands run it (a thread per core).
Images/s are wall clock; on a shared machine compare the ratios. Photo models:
one 768x512 image.

    python bench/codec_speed.py --data ../shared/data/mnist.npz [--batches 1 256] [--models q4 seed-k64]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from latentlink.shared.cli_help import CORES
from latentlink.shared.litert_runtime import LiteNetwork, Unsupported
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import NetworkInfo
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES
from latentlink.train.mnist import load_mnist

REPO = Path(__file__).resolve().parent.parent


def agreement(name: str, images: np.ndarray, port: Callable[[NetworkInfo], Callable[[np.ndarray], np.ndarray]]) -> str:
    """How often another runtime's rounded latents and 8-bit pixels equal the numpy runtime's, on `images` (uint8).

    `port(info)`: that runtime's network for a model half, from a float32 array to an array.
    """
    model = load_model_dir(REPO / "models" / name)
    x = images.reshape(len(images), *model.encoder.input_shape).astype(np.float32) / 255.0
    reference = np.round(NumpyNetwork(model.encoder)(x))
    ported = np.round(port(model.encoder)(x))
    pixels = to_uint8(NumpyNetwork(model.decoder)(reference)).astype(np.int16)
    pixels_ported = to_uint8(port(model.decoder)(reference).reshape(pixels.shape)).astype(np.int16)
    return (
        f"{name}: latents differing after rounding {int(np.count_nonzero(ported != reference))} of {reference.size:,}; "
        f"8-bit pixels: {100 * np.mean(pixels == pixels_ported):.4f}% identical, largest difference "
        f"{int(np.abs(pixels - pixels_ported).max())}"
    )


def images_per_second(network, data: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Best-of-`repeats` throughput of running `data` through `network` in batches."""
    network(data[:batch])  # warm-up: build the graph once
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(data), batch):
            network(data[first : first + batch])
        best = min(best, time.perf_counter() - start)
    return len(data) / best


def matmul_macs_per_second(size: int = 2048, repeats: int = 3) -> float:
    """Multiply-adds per second of a large float32 matrix product (BLAS, all its threads): the machine's yardstick."""
    a = np.random.default_rng(0).random((size, size), np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return size**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256, DEFAULT_BATCH_IMAGES])
    parser.add_argument("--models", nargs="+", default=["seed-k64", "q4", "q2", "q5", "photo-q2"])
    parser.add_argument("--no-tensorflow", action="store_true", help="numpy only (a machine without TensorFlow)")
    args = parser.parse_args()
    _, x_test = load_mnist(args.data)
    images = x_test.astype(np.float32) / 255.0
    peak = matmul_macs_per_second()
    print(f"float32 matmul 2048x2048: {peak / 1e9:.1f} G multiply-adds/s\n")
    print(
        "| model | half | M MACs/image | batch | numpy img/s (library) | numpy img/s (commands) | LiteRT img/s "
        "(commands) | LiteRT / numpy (commands) | TensorFlow img/s | commands / TF | commands % of matmul |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = load_model_dir(REPO / "models" / name)
        photo = model.encoder.any_size
        if photo:
            inputs = np.random.default_rng(0).random((1, 512, 768, 3), np.float32)
        else:
            inputs = images.reshape(len(images), *model.encoder.input_shape)
        latents = np.round(NumpyNetwork(model.encoder)(inputs))
        for half, data in (("encoder", inputs), ("decoder", latents)):
            info = getattr(model, half)
            # the layers' own (an entropy model's run elsewhere); an any-size network counts per block x block
            macs = info.layer_macs * data.shape[1] * data.shape[2] // info.block**2 if photo else info.layer_macs
            for batch in [1] if photo else args.batches:
                subset = data if batch > 1 else data[:1000]
                library = images_per_second(NumpyNetwork(info), subset, batch)
                with threadpool_limits(1, user_api="blas"):
                    set_threads(CORES)
                    commands = images_per_second(NumpyNetwork(info), subset, batch)
                    lite = _lite_images_per_second(info, subset, batch)
                    set_threads(1)
                theirs = None if args.no_tensorflow else images_per_second(CompiledNetwork(info, "cpu"), subset, batch)
                picked = commands if lite is None else lite  # what load_network runs on the CPU
                lite_text = "— | —" if lite is None else f"{lite:,.1f} | {lite / commands:.2f}"
                versus = "— | —" if theirs is None else f"{theirs:,.1f} | {picked / theirs:.2f}"
                print(
                    f"| {name} | {half} | {macs / 1e6:.2f} | {batch} | {library:,.1f} | {commands:,.1f} | "
                    f"{lite_text} | {versus} | {100 * picked * macs / peak:.0f}% |",
                    flush=True,
                )


def _lite_images_per_second(info, data: np.ndarray, batch: int) -> float | None:
    """LiteRT's images/s, or None for a network it does not express (numpy runs those)."""
    try:
        network = LiteNetwork(info)
    except Unsupported:
        return None
    return images_per_second(network, data, batch)


if __name__ == "__main__":
    main()
