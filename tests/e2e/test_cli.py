"""The real commands as separate processes: receiver and sender on loopback, files on disk."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from latentlink.shared.image_io import read_image
from latentlink.shared.metrics import quality
from latentlink.shared.model_dir import default_model_dir, load_model_dir
from tests.conftest import SAMPLES, listening_port
from tests.e2e.conftest import free_port

ENV = dict(os.environ)  # the installed package, not the source folder


def _command(name: str) -> list[str]:
    return [sys.executable, "-m", f"latentlink.{name}"]


@pytest.fixture
def receiver_process(tmp_path: Path):
    """A `receiver` process on a free loopback port; yields (address, out_dir)."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            *_command("receiver"),
            "--listen",
            "127.0.0.1:0",
            "--out",
            str(out),
            "--models",
            str(tmp_path / "models"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    yield f"127.0.0.1:{listening_port(proc)}", out, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _send(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*_command("sender"), *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def test_sample_folder_round_trip_matches_the_model_quality(receiver_process):
    address, out, _ = receiver_process
    result = _send("--target", address, "--json", str(SAMPLES))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    names = sorted(p.name for p in SAMPLES.iterdir())
    assert summary["written"] == len(names) and not summary["failed"]
    session_dir = out / summary["session_dir"]
    assert summary["session_dir"].startswith("mnist-")  # named after the input folder
    assert sorted(p.name for p in session_dir.iterdir()) == names
    originals = np.stack([read_image(SAMPLES / n, (28, 28)) for n in names])
    received = np.stack([read_image(session_dir / n, (28, 28)) for n in names])
    measured = quality(originals, received)
    assert measured.psnr == pytest.approx(summary["expected"]["psnr_db"], abs=1e-9)
    card = load_model_dir(default_model_dir()).card
    assert abs(measured.psnr - card["test"]["psnr_db"]) < 1.5


def test_second_sender_transfers_zero_model_bytes_and_says_so(receiver_process):
    address, _, _ = receiver_process
    first = _send("--target", address, "--quiet", str(SAMPLES / "test_00000.png"))
    second = _send("--target", address, "--quiet", str(SAMPLES / "test_00001.png"))
    assert first.returncode == second.returncode == 0
    assert re.search(r"[1-9]\d* model bytes transferred", first.stdout)
    assert "0 model bytes transferred (receiver had it cached)" in second.stdout


def test_receiver_stops_cleanly_on_sigterm(receiver_process):
    _, _, proc = receiver_process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "shutting down" in proc.stderr.read()


def test_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *_command("receiver"),
                "--listen",
                f"127.0.0.1:{port}",
                "--out",
                str(tmp_path / "o"),
                "--models",
                str(tmp_path / "m"),
            ],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [("missing", "no such file or folder"), ("empty", "has no image files to send")],
)
def test_unusable_input_is_a_one_line_error(tmp_path, setup, message):
    folder = tmp_path / "images"
    if setup == "empty":
        folder.mkdir()
    result = _send("--target", "127.0.0.1:9", str(folder))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_dead_target_is_a_clear_error_and_nonzero_exit(tmp_path):
    port = free_port()  # nothing listens there
    result = _send("--target", f"127.0.0.1:{port}", "--quiet", str(SAMPLES / "test_00000.png"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("sender: error: cannot reach a receiver")
    assert "(1 images not sent)" in result.stderr and "Traceback" not in result.stderr


def test_json_summary_lists_each_failed_image_with_its_reason(receiver_process, tmp_path):
    address, _, _ = receiver_process
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes((SAMPLES / "test_00000.png").read_bytes())
    (folder / "bad.png").write_bytes(b"not a png")
    result = _send("--target", address, "--json", str(folder))
    summary = json.loads(result.stdout)
    assert result.returncode == 1
    assert summary["written"] == 1 and summary["sent"] == 1
    assert "not a readable image" in summary["failed"]["bad.png"]


@pytest.mark.parametrize("workers", ["1", "2"])  # a thread reads (the default on 2 cores), or worker processes
def test_ctrl_c_ends_the_sender_with_one_line_from_every_process_of_its_group(workers):
    """A terminal's Ctrl-C reaches the sender and its read workers alike: one line, exit 130, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers: the sender waits, reading ahead
        command = [*_command("sender"), "--target", f"127.0.0.1:{silent.getsockname()[1]}", "--batch-size", "16"]
        # A terminal's command starts with Ctrl-C's default action; a suite started in the background (`cmd &` in a
        # script) ignores SIGINT, and its children would inherit that. A handled signal is reset for the child.
        inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            sender = subprocess.Popen(
                [*command, "--read-workers", workers, str(SAMPLES)],  # 19 batches of small files
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                start_new_session=True,  # its own process group, as a terminal gives a command
            )
        finally:
            signal.signal(signal.SIGINT, inherited)
        try:
            time.sleep(3)  # the workers are up, the handshake is awaited
            os.killpg(sender.pid, signal.SIGINT)
            _, stderr = sender.communicate(timeout=60)
        finally:
            if sender.poll() is None:
                os.killpg(sender.pid, signal.SIGKILL)
    assert sender.returncode == 130, stderr
    line, *more = stderr.strip().splitlines()
    assert not more and line.startswith(f"sender: interrupted; send again with --session {SAMPLES.name}-")
    assert line.endswith(" to finish (what is in place is not sent twice)")
