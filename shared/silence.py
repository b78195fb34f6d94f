"""Keeps what C libraries print straight to file descriptor 2 (TensorFlow's CUDA notes, LiteRT's banner) off the
terminal, for a moment."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["descriptor_2_silenced"]


@contextlib.contextmanager
def descriptor_2_silenced() -> Iterator[None]:
    """File descriptor 2 on /dev/null while the block runs, then as it was: the same file, or closed again when the
    process was started with it closed (`2>&-`). Process-wide: another thread's writes to it meanwhile are lost."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # closed by whoever started this process
        saved = None
    null = os.open(os.devnull, os.O_WRONLY)  # descriptor 2 itself when that is closed
    try:
        if null != 2:
            os.dup2(null, 2)
        yield
    finally:
        if saved is None:
            os.close(2)
        else:
            os.dup2(saved, 2)
            os.close(saved)
        if null != 2:
            os.close(null)
