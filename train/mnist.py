"""Loads MNIST from a local file (argument or LATENTLINK_MNIST) or Keras' cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["MNIST_ENV", "load_mnist"]

MNIST_ENV = "LATENTLINK_MNIST"


def load_mnist(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (x_train, x_test) as uint8 arrays of shape (n, 28, 28).

    Looks in `path`, else $LATENTLINK_MNIST, else Keras' cache (downloading there).
    """
    path = path or os.environ.get(MNIST_ENV)
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f'MNIST file "{file}" does not exist')
        with np.load(file) as data:
            return data["x_train"], data["x_test"]
    import keras

    (x_train, _), (x_test, _) = keras.datasets.mnist.load_data()
    return x_train, x_test
