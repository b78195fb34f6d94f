"""--device auto|cpu|gpu: which runtime runs the networks, and what happens where TensorFlow cannot run them."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import latentlink.shared.network_runtime as network_runtime
from latentlink.shared.network_runtime import resolve_device
from tests.conftest import SAMPLES

# A machine that shows an NVIDIA GPU, where TensorFlow cannot be imported (absent, or its GPU build broken: as on
# the GPU machines this project measured on, which carry PyTorch and no TensorFlow).
_GPU_WITHOUT_TENSORFLOW = """
import sys
sys.modules["keras"] = None  # importing TensorFlow (through Keras) now raises ImportError
import latentlink.shared.network_runtime as network_runtime
network_runtime.gpu_present = lambda: True
from latentlink.sender.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def gpu_without_tensorflow(monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'keras'")

    monkeypatch.setattr(network_runtime, "gpu_present", lambda: True)
    monkeypatch.setattr(network_runtime, "tensorflow", missing)
    monkeypatch.setattr(network_runtime, "_told", set())


def test_cpu_never_imports_tensorflow(monkeypatch):
    monkeypatch.setattr(network_runtime, "tensorflow", lambda: pytest.fail("TensorFlow was imported"))
    monkeypatch.setattr(network_runtime, "gpu_present", lambda: True)
    assert resolve_device("cpu") == "cpu"


def test_auto_without_a_gpu_is_the_cpu_without_importing_tensorflow(monkeypatch):
    monkeypatch.setattr(network_runtime, "tensorflow", lambda: pytest.fail("TensorFlow was imported"))
    monkeypatch.setattr(network_runtime, "gpu_present", lambda: False)
    assert resolve_device("auto") == "cpu"


def test_auto_runs_on_the_cpu_where_tensorflow_cannot_be_imported_and_says_so_once(gpu_without_tensorflow, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_device("auto") == "cpu"
        assert resolve_device("auto") == "cpu"
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 1 and "TensorFlow could not be imported" in said[0] and "running on the CPU" in said[0]


def test_gpu_where_tensorflow_cannot_be_imported_is_a_clear_error(gpu_without_tensorflow):
    with pytest.raises(RuntimeError, match="--device gpu needs TensorFlow: TensorFlow could not be imported"):
        resolve_device("gpu")


def test_gpu_where_tensorflow_sees_none_is_a_clear_error():
    """The real TensorFlow, on a machine without a GPU (as CI is); skipped where one is present."""
    if network_runtime.gpu_present():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="TensorFlow sees no GPU"):
        resolve_device("gpu")


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match='unknown device "tpu"'):
        resolve_device("tpu")


@pytest.mark.parametrize(("device", "code"), [("auto", 0), ("gpu", 2)])
def test_the_sender_command_on_a_gpu_machine_without_tensorflow(device, code):
    """A real sender process: auto encodes on the CPU with one warning; gpu is an error, and neither a traceback."""
    run = subprocess.run(
        [sys.executable, "-c", _GPU_WITHOUT_TENSORFLOW, "--dry-run", "--device", device, str(SAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    if code == 0:
        assert run.stderr.count("TensorFlow could not be imported") == 1
        assert "dry run: 300 images" in run.stdout
    else:
        assert "--device gpu needs TensorFlow" in run.stderr
