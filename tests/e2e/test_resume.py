"""A receiver killed with SIGKILL at random points of a transfer and restarted: every image lands exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.image_io import read_image
from latentlink.shared.model_dir import default_model_dir, load_model_dir
from tests.conftest import listening_port
from tests.e2e.conftest import free_port, visible_files
from tests.e2e.test_cli import ENV, _command

IMAGES = 3000
KILLS = 3


def _start_receiver(port: int, out: Path, models: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*_command("receiver"), "--listen", f"127.0.0.1:{port}", "--out", str(out), "--models", str(models), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert listening_port(proc) == port
    return proc


def _written(out: Path) -> int:
    return sum(1 for p in out.rglob("*.png"))


def test_sigkilled_receiver_is_resumed_and_every_image_lands_once(tmp_path, mnist):
    _, x_test = mnist
    images = x_test[:IMAGES]
    np.save(tmp_path / "digits.npy", images)
    port = free_port()
    out, models = tmp_path / "out", tmp_path / "models"
    receiver = _start_receiver(port, out, models)
    sender = subprocess.Popen(
        [
            *_command("sender"),
            "--target",
            f"127.0.0.1:{port}",
            "--session",
            "resume",
            "--batch-size",
            "8",
            "--json",
            "--retry-for",
            "90",
            str(tmp_path / "digits.npy"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    kills = 0
    # Kill at random points (seeded, so a failure can be replayed), spread over the transfer.
    thresholds = sorted(random.Random(7).sample(range(100, IMAGES - 600), KILLS))
    try:
        for threshold in thresholds:
            deadline = time.monotonic() + 120
            while _written(out) < threshold and sender.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if sender.poll() is not None:
                break
            receiver.send_signal(signal.SIGKILL)
            receiver.wait()
            kills += 1
            receiver = _start_receiver(port, out, models)
        stdout, stderr = sender.communicate(timeout=240)
    finally:
        sender.kill()
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=60)
    assert kills == KILLS, "the transfer finished before the receiver could be killed every time"
    summary = json.loads(stdout)
    assert sender.returncode == 0, (summary["error"], stderr[-2000:])
    assert summary["written"] == IMAGES and not summary["failed"] and summary["reconnects"] >= KILLS
    files = visible_files(out)
    assert files == sorted(f"resume/digits_{i:04d}.png" for i in range(IMAGES))  # once each, no leftovers
    codec = BatchEncoder(load_model_dir(default_model_dir()), "cpu")
    expected = codec.reconstruct(codec.encode(images))
    for i in range(0, IMAGES, 7):
        np.testing.assert_array_equal(read_image(out / f"resume/digits_{i:04d}.png", (28, 28)), expected[i])
    assert summary["session_dir"] == "resume"
