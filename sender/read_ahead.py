"""Reads image batches ahead of the encoder, in a thread or worker processes, overlapping file reads with encoding."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from latentlink.shared.image_io import ArrayRows, ImageError, SourceImage

__all__ = ["LoadedBatch", "ReadAhead", "load_batch"]

log = logging.getLogger(__name__)

# Fewer batches than this are read by the thread: starting processes (0.2-0.3 s of CPU) would not pay.
PROCESS_MIN_BATCHES = 8


@dataclass(frozen=True)
class LoadedBatch:
    names: list[str]
    # (len(names), height, width) uint8; a list when images of any size differ in shape
    pixels: np.ndarray | list[np.ndarray] | None
    failed: dict[str, str]  # name -> why it could not be read
    input_bytes: list[int]  # of each image read, in the order of names: its file's size (an array's bytes per image)


def load_batch(batch: Sequence[SourceImage]) -> LoadedBatch:
    """Reads a batch of images; unreadable ones become failures."""
    if (stack := _array_run(batch)) is not None:
        return stack
    images, names, failed, sizes = [], [], {}, []
    for source in batch:
        try:
            image, size = source.read()
        except ImageError as exc:
            failed[source.name] = str(exc)
            continue
        images.append(image)
        names.append(source.name)
        sizes.append(size)
    if not images:
        return LoadedBatch(names, None, failed, sizes)
    same = len({image.shape for image in images}) == 1
    return LoadedBatch(names, np.stack(images) if same else images, failed, sizes)


def _array_run(batch: Sequence[SourceImage]) -> LoadedBatch | None:
    """Consecutive rows of one array, read as one slice (a digit in a tenth of the time), or None: other
    sources, or a row that is not an image (then each row is read, and fails, on its own)."""
    reader = batch[0].reader if batch else None
    if not isinstance(reader, ArrayRows):
        return None
    first = batch[0].key
    if any(source.reader is not reader or source.key != first + i for i, source in enumerate(batch)):
        return None
    try:
        pixels = reader.rows(first, first + len(batch))
    except ImageError:
        return None
    return LoadedBatch([source.name for source in batch], pixels, {}, [reader.size_bytes] * len(batch))


class ReadAhead:
    """Iterates loaded batches in order, read up to `depth` ahead by `workers`; a worker's error is raised here.

    Several workers read files of images of a model's fixed size (a digit's PNG) in worker processes: most
    of such a small image's time is Python-side handling, which threads in one process would queue for on
    the GIL, and the image comes back small. A thread reads until the processes are up (a few tenths of a
    second), so that their start-up delays no batch. Images of `any_size` (photos) spend their time in
    libpng without the GIL: threads read them, and nothing large is copied between processes. Images in an
    array (.npy/.npz) are already in memory: one thread reads them. Close when done.
    """

    def __init__(
        self, batches: Sequence[Sequence[SourceImage]], depth: int, workers: int = 1, any_size: bool = False
    ) -> None:
        self._batches = iter(batches)
        first = batches[0] if batches else []
        files = bool(first) and all(source.in_file for source in first)
        self._thread = ThreadPoolExecutor(workers if files and any_size else 1, thread_name_prefix="read")
        self._processes: ProcessPoolExecutor | None = None  # set once its workers are up
        self._lock = threading.Lock()  # orders the processes' arrival with close
        self._closed = False
        self._depth = max(depth, workers)
        self._pending: deque[Future] = deque()
        self._fill()
        if workers > 1 and files and not any_size and len(batches) > PROCESS_MIN_BATCHES:
            threading.Thread(target=self._start_processes, args=(workers,), daemon=True, name="read-start").start()

    def _start_processes(self, workers: int) -> None:
        """Starts the worker processes; they take the batches not yet given to the thread once all are up."""
        pool = _process_pool(workers)
        try:
            for ready in [pool.submit(load_batch, []) for _ in range(workers)]:  # an empty batch each: up
                ready.result()
        except (OSError, BrokenProcessPool) as exc:  # the thread reads on
            log.warning("reading in this process: worker processes did not start (%s)", exc)
        else:
            with self._lock:
                if not self._closed:
                    self._processes = pool
                    return
        _end_processes(pool)

    def _fill(self) -> None:
        while len(self._pending) < self._depth and (batch := next(self._batches, None)) is not None:
            self._pending.append((self._processes or self._thread).submit(load_batch, batch))

    def __iter__(self) -> Iterator[LoadedBatch]:
        while self._pending:
            loaded = self._pending.popleft().result()
            self._fill()
            yield loaded

    def close(self) -> None:
        """Stops reading: batches not started are dropped, the workers end after the ones they are reading (the
        worker processes are waited for: see _end_processes)."""
        self._pending.clear()
        with self._lock:
            self._closed = True
            processes = self._processes
        self._thread.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            _end_processes(processes)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: workers fork from a fresh server process, never from this one and its gRPC threads.
    context = multiprocessing.get_context("forkserver")
    # The server imports the reading code once, before it forks (with "__main__", the default: a console
    # script's workers would each import it again); the workers start with it loaded.
    context.set_forkserver_preload(["__main__", __name__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_interrupt)


def _end_processes(pool: ProcessPoolExecutor) -> None:
    """Shuts a pool of worker processes down and waits for it (they finish the batches they are reading).

    Not waiting left the pool's manager thread closing its wake-up pipe while Python's exit handler for process
    pools wrote to it, unguarded (Python 3.11): "Exception ignored ... thread_wakeup.wakeup()" and a traceback on
    stderr after the sender's last line, seen after a Ctrl-C (CPython later guarded that pipe with a lock,
    python/cpython#125492).
    """
    pool.shutdown(wait=True, cancel_futures=True)


def _ignore_interrupt() -> None:
    """A worker's start: Ctrl-C reaches every process of the terminal's group. The sender handles it and closes the
    pool; a worker ignores it rather than print a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
