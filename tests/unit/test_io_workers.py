"""Reading on the sender and PNG encoding on the receiver in several threads: same results, same order."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from latentlink.receiver import png_workers
from latentlink.receiver.png_workers import PngWorkers
from latentlink.sender import read_ahead
from latentlink.sender.cli import build_parser
from latentlink.sender.read_ahead import PROCESS_MIN_BATCHES, ReadAhead
from latentlink.shared.cli_help import CORES, READ_WORKERS, read_workers
from latentlink.shared.image_io import ImageError, SourceImage, encode_png, find_sources
from tests.conftest import SAMPLES


def test_batches_read_by_several_workers_come_in_order_and_match_one_worker():
    sources = find_sources(SAMPLES, (28, 28))
    batches = [sources[i : i + 16] for i in range(0, len(sources), 16)]
    one = list(ReadAhead(batches, depth=2, workers=1))
    four = ReadAhead(batches, depth=2, workers=4)
    got = list(four)
    assert [b.names for b in got] == [b.names for b in one] == [[s.name for s in b] for b in batches]
    for a, b in zip(got, one, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def _pid_image(key: int) -> tuple[np.ndarray, int]:
    """An "image file" whose pixels say which process read it."""
    return np.full((2, 2), os.getpid(), np.int64), 1


def _held_until(path: str) -> None:
    """A worker process's initializer: the worker is up once `path` exists (or after 10 s)."""
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_thread_reads_until_the_worker_processes_are_up_then_they_read(tmp_path, monkeypatch):
    up = tmp_path / "up"

    def held_pool(workers: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_held_until, initargs=(str(up),))

    monkeypatch.setattr(read_ahead, "_process_pool", held_pool)
    batches = [[SourceImage(f"{i}.png", _pid_image, i, in_file=True)] for i in range(200)]
    reader = iter(ReadAhead(batches, depth=2, workers=2))
    before = [int(next(reader).pixels[0, 0, 0]) for _ in range(20)]
    assert set(before) == {os.getpid()}  # no batch waits for the processes to start
    up.touch()
    after = []
    for loaded in reader:
        after.append(int(loaded.pixels[0, 0, 0]))
        if after[-1] == os.getpid():
            time.sleep(0.05)  # time for the processes to come up
    taken = next(i for i, pid in enumerate(after) if pid != os.getpid())  # then they read every batch
    assert all(pid != os.getpid() for pid in after[taken:])


def test_a_few_batches_are_read_here():
    batches = [[SourceImage(f"{i}.png", _pid_image, i, in_file=True)] for i in range(PROCESS_MIN_BATCHES)]
    assert {int(b.pixels[0, 0, 0]) for b in ReadAhead(batches, depth=2, workers=2)} == {os.getpid()}


def test_photos_are_read_by_threads_here():
    batches = [[SourceImage(f"{i}.png", _pid_image, i, in_file=True)] for i in range(4 * PROCESS_MIN_BATCHES)]
    loaded = ReadAhead(batches, depth=2, workers=2, any_size=True)
    assert {int(b.pixels[0, 0, 0]) for b in loaded} == {os.getpid()}


def test_images_already_in_memory_are_read_by_a_thread():
    batches = [[SourceImage(f"{i}.png", _pid_image, i)] for i in range(4)]
    assert {int(b.pixels[0, 0, 0]) for b in ReadAhead(batches, depth=2, workers=2)} == {os.getpid()}


def test_a_reader_crash_is_raised_to_the_consumer_and_unreadable_images_are_failures():
    def broken(key: int) -> tuple[np.ndarray, int]:
        if key == 1:
            raise ImageError("not an image")
        if key == 2:
            raise RuntimeError("disk on fire")
        return np.zeros((28, 28), np.uint8), 1

    batches = [[SourceImage("a", broken, 0), SourceImage("b", broken, 1)], [SourceImage("c", broken, 2)]]
    reader = iter(ReadAhead(batches, depth=2, workers=2))
    first = next(reader)
    assert first.names == ["a"] and first.failed == {"b": "not an image"}
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(reader)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_png_workers_give_the_same_bytes_in_the_same_order(workers):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, 17), np.uint8) for h in range(1, 12)] + [
        rng.integers(0, 256, (5, 9, 3), np.uint8)
    ]
    assert PngWorkers(workers).encode(images) == [encode_png(image) for image in images]
    assert PngWorkers(workers).encode([]) == []
    stack = rng.integers(0, 256, (7, 28, 28), np.uint8)  # a decoded batch: its parts encoded a stack at a time
    assert PngWorkers(workers).encode(stack) == [encode_png(image) for image in stack]


def test_png_workers_encode_a_started_batch_while_the_caller_goes_on(monkeypatch):
    """The receiver starts a batch's PNGs as it is decoded; its writer takes them later, in order."""
    gate = threading.Event()

    def held_until_the_gate_opens(images):
        assert gate.wait(10), "the caller never went on"
        return [encode_png(image) for image in images]

    monkeypatch.setattr(png_workers, "encode_pngs", held_until_the_gate_opens)
    images = [np.full((3, 4), value, np.uint8) for value in range(5)]
    pending = PngWorkers(2).start(images)  # returns while the workers wait
    gate.set()
    assert pending.result() == [encode_png(image) for image in images]


def test_the_senders_default_reading_leaves_a_core_to_the_encoder():
    # 2 cores: a thread reads (no processes beside the encoder); larger machines read in processes, at most 4.
    assert [read_workers(cores) for cores in (1, 2, 3, 4, 8, 64)] == [1, 1, 2, 3, 4, 4]
    assert build_parser().parse_args(["--target", "h:1", "x"]).read_workers == READ_WORKERS == read_workers(CORES)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_a_batch_of_array_rows_reads_as_one_slice_and_a_bad_row_fails_alone(tmp_path, dtype):
    rng = np.random.default_rng(7)
    digits = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    array = digits if dtype == "uint8" else digits.astype(np.float32) / 255.0
    if dtype == "float32":
        array[13, 5, 5] = np.nan  # one row that is not an image
    np.save(tmp_path / "digits.npy", array)
    sources = find_sources(tmp_path / "digits.npy", (28, 28))
    run = read_ahead.load_batch(sources[8:24])
    one_by_one = [source for source in sources[8:24] if dtype == "uint8" or source.key != 13]
    assert run.names == [source.name for source in one_by_one]
    np.testing.assert_array_equal(run.pixels, np.stack([source.load() for source in one_by_one]))
    assert list(run.failed) == ([sources[13].name] if dtype == "float32" else [])
    assert run.input_bytes == [28 * 28 * array.itemsize] * len(run.names)
    picked = read_ahead.load_batch([sources[3], sources[1], sources[30]])  # not a run of rows: read one by one
    np.testing.assert_array_equal(picked.pixels, digits[[3, 1, 30]])
