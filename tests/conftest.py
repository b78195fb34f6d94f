"""Shared fixtures: MNIST from ../shared/data (or $LATENTLINK_MNIST), the shipped models, a tiny photo model."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
SAMPLES = REPO / "samples" / "mnist"


def load_bench(name: str) -> ModuleType:
    """A script of bench/ (not a package) as a module, registered under its name (dataclasses look there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def listening_port(process: subprocess.Popen) -> int:
    """The port a receiver process says it listens on, in its first line of output (text mode)."""
    line = process.stdout.readline()
    match = re.search(r"listening on \S+:(\d+)", line)
    assert match, f"receiver did not start: {line!r} {process.stderr.read() if process.poll() is not None else ''}"
    return int(match.group(1))


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


def _tiny_photo_model(means: bool):
    """An untrained photo model, small enough to build in a second, and its config (seeded)."""
    import keras

    from latentlink.train.photo_model import build_photo_model
    from latentlink.train.photo_training import PhotoConfig

    keras.utils.set_random_seed(3)
    config = PhotoConfig(channels=8, latent=8, hyper=8, side=4, means=means)
    return build_photo_model(config.channels, config.latent, config.hyper, config.side, means=means), config


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """The tiny photo model's folder: what matters where it is used is the plumbing."""
    from latentlink.train.photo_export import write_photo_model

    model, config = _tiny_photo_model(means=True)
    rng = np.random.default_rng(3)
    for layer in model.hyper_synthesis.layers:  # biases off zero, so that z = 0 still predicts means
        layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype(np.float32))
    folder = tmp_path_factory.mktemp("tiny")
    write_photo_model(model, config, {}, folder, "tiny", "test")
    return folder


@pytest.fixture(scope="session")
def tiny(tiny_folder: Path):
    """The tiny photo model's files."""
    from latentlink.shared.model_dir import load_model_dir

    return load_model_dir(tiny_folder)


@pytest.fixture(scope="session")
def tiny_scale_only(tmp_path_factory):
    """The tiny photo model without means: a scale hyperprior (Balle 2018), as `latentlink-train --scale-only`
    makes."""
    from latentlink.shared.model_dir import load_model_dir
    from latentlink.train.photo_export import write_photo_model

    model, config = _tiny_photo_model(means=False)
    folder = tmp_path_factory.mktemp("tiny-scale")
    write_photo_model(model, config, {}, folder, "tiny-scale", "test")
    return load_model_dir(folder)
