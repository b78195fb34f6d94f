"""Shared fixtures: MNIST from ../shared/data (or $LATENTLINK_MNIST) and the shipped models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
SAMPLES = REPO / "samples" / "mnist"


def _mnist_path() -> Path | None:
    candidates = [os.environ.get("LATENTLINK_MNIST"), REPO.parent / "shared" / "data" / "mnist.npz"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """Path of mnist.npz; skips when no MNIST file is available."""
    path = _mnist_path()
    if path is None:
        pytest.skip("MNIST not found: set LATENTLINK_MNIST=/path/to/mnist.npz")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x_train, x_test) uint8 arrays."""
    with np.load(mnist_path) as data:
        return data["x_train"], data["x_test"]


def outputs_under_thread_counts(script: str, *args: str, counts=("1", "2", "4")) -> set[str]:
    """What `python -c script args` prints with BLAS limited to each thread count (BLAS splits sums by thread)."""
    outputs = set()
    for threads in counts:
        env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        result = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, env={**os.environ, **env}
        )
        outputs.add(result.stdout.strip())
    return outputs
