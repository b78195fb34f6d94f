"""Imports TensorFlow once, without its C++ start-up chatter on the terminal."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import threading

__all__ = ["freeze_heap", "import_in_background", "protect_stderr", "tensorflow"]


@contextlib.contextmanager
def _stderr_silenced():
    # TF and XLA print CUDA probing notes straight to fd 2 before any log
    # level applies; LATENTLINK_TF_VERBOSE=1 shows them for debugging.
    if os.environ.get("LATENTLINK_TF_VERBOSE"):
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def protect_stderr() -> None:
    """Sends Python's stderr to a private copy of file descriptor 2.

    The import below silences descriptor 2 for a few seconds; a program that
    imports TensorFlow in a background thread calls this first, so that its own
    messages, logs and progress bars written meanwhile still reach the terminal.
    """
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):  # replaced by a test harness: nothing to protect
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


_import_lock = threading.Lock()


def import_in_background() -> None:
    """Starts importing TensorFlow now, in a daemon thread, for a program that needs it soon."""
    threading.Thread(target=tensorflow, daemon=True, name="import-tensorflow").start()


def tensorflow():
    """Returns the tensorflow module, imported and its devices probed quietly (once, whichever thread asks)."""
    with _import_lock:
        return _import()


@functools.cache
def _import():
    gc.disable()  # the import allocates ~300k objects: collecting meanwhile only wastes time
    try:
        with _stderr_silenced():
            import tensorflow as tf

            tf.config.list_logical_devices()
    finally:
        gc.enable()
    freeze_heap()
    return tf


def freeze_heap() -> None:
    """Exempts every object alive now (TensorFlow's, the models') from future garbage collections.

    Without this, each full collection walks hundreds of thousands of long-lived
    objects while the codec allocates per batch: a few percent of the CPU time.
    """
    gc.freeze()
