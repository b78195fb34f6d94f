"""Array to array: a receiver process with --save-as npz and --json, fed a .npy array by a sender process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.e2e.test_cli import ENV


def test_npy_in_npz_out_with_json_records_on_both_sides(tmp_path: Path, encoder, mnist):
    images = mnist[1][:700]
    np.save(tmp_path / "digits.npy", images)
    out = tmp_path / "out"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "latentlink.receiver", "--listen", "127.0.0.1:0", "--out", str(out)]
        + ["--models", str(tmp_path / "models"), "--json", "--save-as", "npz", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        listening = json.loads(receiver.stdout.readline())
        assert listening["event"] == "listening"
        result = subprocess.run(
            [sys.executable, "-m", "latentlink.sender", "--target", listening["address"], "--json"]
            + ["--batch-size", "256", "--session", "arrays", str(tmp_path / "digits.npy")],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        session = json.loads(receiver.stdout.readline())
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
    assert session["event"] == "session" and session["session"] == "arrays"
    assert session["written"] == 700 and session["failed"] == 0 and session["encoding"] == "ans"
    assert session["decode_s"] > 0 and session["write_s"] > 0
    files = sorted((out / "arrays").iterdir())
    assert [f.name for f in files] == ["batch-000000000000.npz", "batch-000000000256.npz", "batch-000000000512.npz"]
    assert summary["written"] == 700 and summary["session_dir"] == "arrays"
    names, pixels = [], []
    for file in files:
        with np.load(file, allow_pickle=False) as batch:
            names += batch["names"].tolist()
            pixels.append(batch["images"])
    assert names == [f"digits_{i:03d}.png" for i in range(700)]
    np.testing.assert_array_equal(np.concatenate(pixels), encoder.reconstruct(encoder.encode(images)))
