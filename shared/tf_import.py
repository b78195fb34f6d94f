"""Imports TensorFlow and Keras once, quietly, without touching the caller's environment or home folder."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import threading

from latentlink.shared.silence import descriptor_2_silenced

__all__ = ["freeze_heap", "import_in_background", "protect_stderr", "settle_import", "tensorflow"]


def _stderr_silenced() -> contextlib.AbstractContextManager:
    # TF and XLA print CUDA probing notes straight to fd 2 before any log
    # level applies; LATENTLINK_TF_VERBOSE=1 shows them for debugging.
    return contextlib.nullcontext() if os.environ.get("LATENTLINK_TF_VERBOSE") else descriptor_2_silenced()


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


_background: list[threading.Thread] = []


def import_in_background() -> None:
    """Starts importing TensorFlow now, in a daemon thread, for a program that needs it soon.

    Such a program calls `settle_import` before it ends: one that ends while the
    import runs can abort (SIGABRT) in TensorFlow's C++ teardown.
    """
    thread = threading.Thread(target=_import_quietly, daemon=True, name="import-tensorflow")
    _background.append(thread)
    thread.start()


def _import_quietly() -> None:
    with contextlib.suppress(ImportError):  # the caller's own `tensorflow()` meets it again, and says what it means
        tensorflow()


def settle_import() -> None:
    """Waits until a background import of TensorFlow, if one was started, has ended."""
    for thread in _background:
        thread.join()


def tensorflow():
    """Returns the tensorflow module, imported and its devices probed quietly (once, whichever thread asks)."""
    with _import_lock:
        return _import()


@contextlib.contextmanager
def _import_environment():
    """Sets, for the import only, what keeps TensorFlow quiet and Keras out of ~/.keras; then restores it.

    Keras writes ~/.keras/keras.json when it is first imported; pointed at a
    folder that cannot exist, it writes nothing and uses its defaults (which
    also keeps a user's keras.json, e.g. another backend, from changing us).
    Keras also imports matplotlib when it is installed, for its plotting
    helpers, and matplotlib writes ~/.config and ~/.cache: unless the program
    has imported matplotlib itself, Keras is told it is absent.
    """
    saved = {name: os.environ.get(name) for name in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME")}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read once by TensorFlow's C++ logging
    os.environ["KERAS_HOME"] = os.path.join(os.devnull, "keras")
    hidden = "matplotlib" not in sys.modules
    if hidden:
        sys.modules["matplotlib"] = None  # `import matplotlib` raises ImportError, which Keras expects
    try:
        yield
    finally:
        if hidden and sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.cache
def _import():
    gc.disable()  # the import allocates ~300k objects: collecting meanwhile only wastes time
    try:
        with _stderr_silenced(), _import_environment():
            import keras  # noqa: F401  (imported here, so that it never writes to the home folder)
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
