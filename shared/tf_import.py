"""Imports TensorFlow once, without its C++ start-up chatter on the terminal."""

from __future__ import annotations

import contextlib
import functools
import os

__all__ = ["tensorflow"]


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


@functools.cache
def tensorflow():
    """Returns the tensorflow module, imported and its devices probed quietly."""
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_logical_devices()
    return tf
