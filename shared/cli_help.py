"""What the command-line tools share: help formatting, --version, and a quiet process environment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = [
    "CORES",
    "EXIT_INTERRUPTED",
    "IO_WORKERS",
    "READ_WORKERS",
    "HelpFormatter",
    "add_version",
    "command_runtime",
    "interrupted",
    "quiet_process",
    "read_workers",
    "worker_count",
]

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# Default threads that encode PNGs (receiver), each on a core of its own; more than four rarely pay.
IO_WORKERS = min(4, CORES)


def read_workers(cores: int) -> int:
    """The sender's default reading workers on a machine of `cores`: a core is left to the encoder, and four keep
    a GPU encoder fed. On 2 cores a thread reading beside the encoder beat two worker processes, whose start-up
    and hand-offs cost ~0.3 s of CPU on 10,000 digits (bench/RESULTS.md, fifteenth session); more than one
    worker reads in processes."""
    return max(1, min(4, cores - 1))


READ_WORKERS = read_workers(CORES)
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


# 128 + SIGINT: what shells report for a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130


def interrupted(command: str, then: str = "") -> int:
    """Ctrl-C in a command: one line on stderr (with what to do `then`), not a traceback; returns the exit code."""
    print(f"{command}: interrupted" + (f"; {then}" if then else ""), file=sys.stderr)
    return EXIT_INTERRUPTED


def add_version(parser: argparse.ArgumentParser) -> None:
    """Adds --version, printing the installed package's version (looked up only then)."""
    parser.add_argument("--version", action=_Version, help="show the version and exit")


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from latentlink import __version__

        print(f"{parser.prog} (latentlink) {__version__}")
        parser.exit()


def quiet_process() -> None:
    """Keeps TensorFlow's and gRPC's C++ logs off this command's terminal; users can still raise them.

    Called first thing in each command's `main`: it changes this process's
    environment only, never a program that imports latentlink as a library.
    """
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) drowns our one-line messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # gRPC's C core logs failed binds and TLS handshakes at info level; our errors already say why.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def command_runtime() -> None:
    """Sets this command's CPU work up: numpy's BLAS on one thread, the CPU runtimes (LiteRT, numpy) on a thread
    per core, and freed memory kept for reuse.

    The sender's and receiver's stages (reading, encoding, coding, decoding,
    PNG, writes) overlap in threads; BLAS's own worker threads spin while they
    wait and take those cores. The runtime cuts a batch over the cores itself,
    every layer's work included, and each image gives the same floats however
    it is cut. Every batch allocates and frees megabytes of arrays: glibc's
    default gives that memory back to the system and takes it again (a page
    fault per page), which cost a loopback folder run a third of its CPU in
    system time (`bench/RESULTS.md`). Called in `main` only: a program that
    imports latentlink keeps its own settings. (The installed commands' entry
    points, `launch`, also tell OpenBLAS one thread before numpy loads, so it
    starts none to spin; this limit still holds for a `main` called in-process.)
    """
    from threadpoolctl import threadpool_limits

    from latentlink.shared.numpy_runtime import set_threads

    threadpool_limits(1, user_api="blas")
    set_threads(CORES)
    _keep_freed_memory()


# glibc's mallopt parameters, and what the commands set: arrays up to 32 MiB (its largest allowed threshold) come
# from the heap rather than mmap, and up to 256 MiB freed at the top of a heap stays there for the next batch.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_ALLOCATOR_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 16 << 20))


def _keep_freed_memory() -> None:
    """Tells glibc's allocator to keep freed memory for reuse (nothing elsewhere: other C libraries lack mallopt)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    for parameter, value in _ALLOCATOR_SETTINGS:
        mallopt(parameter, value)
