"""--device auto|cpu|gpu: which runtime runs the networks, and what happens where TensorFlow cannot run them."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

import pytest

import latentlink.shared.network_runtime as network_runtime
from latentlink.shared.network_runtime import resolve_device
from tests.conftest import SAMPLES, listening_port

# A machine that shows an NVIDIA GPU, where TensorFlow cannot be imported (absent, or its GPU build broken: as on
# the GPU machines this project measured on, which carry PyTorch and no TensorFlow).
# Runs `latentlink.<argv[1]>.cli.main(argv[2:])` there.
_GPU_WITHOUT_TENSORFLOW = """
import importlib, sys
sys.modules["keras"] = None  # importing TensorFlow (through Keras) now raises ImportError
import latentlink.shared.network_runtime as network_runtime
network_runtime.gpu_present = lambda: True
sys.exit(importlib.import_module(f"latentlink.{sys.argv[1]}.cli").main(sys.argv[2:]))
"""


def _on_gpu_without_tensorflow(command: str, *args: str) -> list[str]:
    return [sys.executable, "-c", _GPU_WITHOUT_TENSORFLOW, command, *args]


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
        _on_gpu_without_tensorflow("sender", "--dry-run", "--device", device, str(SAMPLES)),
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


def test_a_receiver_and_a_sender_on_a_gpu_machine_without_tensorflow_run_on_the_cpu(tmp_path):
    """Both real commands, with auto: the receiver starts, warns once, decodes on the CPU and writes every image."""
    receiver = subprocess.Popen(
        _on_gpu_without_tensorflow(
            "receiver", "--listen", "127.0.0.1:0", "--out", str(tmp_path / "out"), "--models", str(tmp_path / "m")
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = listening_port(receiver)
        sent = subprocess.run(
            _on_gpu_without_tensorflow("sender", "--target", f"127.0.0.1:{port}", str(SAMPLES)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert sent.returncode == 0, sent.stderr
        assert len(list((tmp_path / "out").rglob("*.png"))) == 300
    finally:
        receiver.send_signal(signal.SIGTERM)
        _, said = receiver.communicate(timeout=60)
    assert receiver.returncode == 0
    assert "Traceback" not in said and said.count("TensorFlow could not be imported") == 1
