"""The benchmark's baseline framing: named PNG files in one message, and back."""

from __future__ import annotations

import pytest

from tests.conftest import load_bench

baseline = load_bench("png_baseline")


def test_a_batch_of_named_files_round_trips():
    names = ["a.png", "sub/b.png", "c.png"]
    files = [b"\x89PNG one", b"", bytes(range(256)) * 3]
    assert baseline.unpack_batch(baseline.pack_batch(7, names, files)) == (7, names, files)


def test_the_empty_batch_ends_the_stream():
    assert baseline.unpack_batch(baseline.pack_batch(0, [], [])) == (0, [], [])


@pytest.mark.parametrize("cut", [1, 10])
def test_a_truncated_batch_is_refused(cut):
    data = baseline.pack_batch(0, ["a.png", "b.png"], [b"xx", b"yyy"])
    with pytest.raises(ValueError):
        baseline.unpack_batch(data[:-cut])
