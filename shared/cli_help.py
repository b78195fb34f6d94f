"""What the command-line tools share: help formatting, --version, and a quiet process environment."""

from __future__ import annotations

import argparse
import os

__all__ = [
    "CORES",
    "IO_WORKERS",
    "HelpFormatter",
    "add_version",
    "command_threads",
    "quiet_process",
    "worker_count",
]

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Default workers that read image files (sender) or encode PNGs (receiver), each on a core of its own.
# Four keep a GPU encoder fed; more rarely pay.
IO_WORKERS = min(4, CORES)
MAX_IO_WORKERS = 64


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except the empty ones (None, False) that say nothing; keeps the examples' lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


def worker_count(text: str) -> int:
    """argparse type for a number of workers (1..MAX_IO_WORKERS)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_IO_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers from 1 to {MAX_IO_WORKERS}, got {text!r}")
    return count


def add_version(parser: argparse.ArgumentParser) -> None:
    """Adds --version, printing the installed package's version."""
    from latentlink import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s (latentlink) {__version__}")


def quiet_process() -> None:
    """Keeps TensorFlow's and gRPC's C++ logs off this command's terminal; users can still raise them.

    Called first thing in each command's `main`: it changes this process's
    environment only, never a program that imports latentlink as a library.
    """
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) drowns our one-line messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # gRPC's C core logs failed binds and TLS handshakes at info level; our errors already say why.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def command_threads() -> None:
    """Gives this command's numpy BLAS one thread, and the numpy runtime a thread per core instead.

    The sender's and receiver's stages (reading, encoding, coding, decoding,
    PNG, writes) overlap in threads; BLAS's own worker threads spin while they
    wait and take those cores. The runtime cuts a batch over the cores itself,
    every layer's work included, and each image gives the same floats however
    it is cut. Called in `main` only: a program that imports latentlink keeps
    its own settings.
    """
    from threadpoolctl import threadpool_limits

    from latentlink.shared.numpy_runtime import set_threads

    threadpool_limits(1, user_api="blas")
    set_threads(CORES)
