"""Scale-out: one sender process, parallel streams balanced by gRPC's round_robin over three receivers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentlink.shared.image_io import read_image
from tests.conftest import REPO, SAMPLES
from tests.e2e.conftest import start_receiver, visible
from tests.e2e.test_cli import ENV


@pytest.fixture
def three_receivers(tmp_path: Path):
    receivers = [start_receiver(tmp_path / f"rx{i}" / "out", tmp_path / f"rx{i}" / "models") for i in range(3)]
    yield receivers
    for receiver in receivers:
        receiver.stop()


def _send(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "latentlink.sender", "--json", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def test_streams_spread_over_three_receivers_and_every_image_lands_once(three_receivers, encoder):
    target = ",".join(r.address for r in three_receivers)
    result = _send("--target", target, "--streams", "3", "--session", "spread", str(SAMPLES))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    names = sorted(p.name for p in SAMPLES.iterdir())
    assert summary["written"] == len(names) and not summary["failed"]
    assert sorted(s["session_dir"] for s in summary["streams"]) == ["spread.1", "spread.2", "spread.3"]
    landed: dict[str, Path] = {}
    for receiver in three_receivers:
        sessions = visible(receiver.out)
        assert len(sessions) == 1, f"{receiver.address} served {len(sessions)} streams; round_robin gives it one"
        for path in sessions[0].iterdir():
            assert path.name not in landed, f"{path.name} written twice"
            landed[path.name] = path
    assert sorted(landed) == names
    # What landed is the model's reconstruction of each original, whichever receiver decoded it.
    originals = np.stack([read_image(SAMPLES / n, (28, 28)) for n in names[:40]])
    expected = encoder.reconstruct(encoder.encode(originals))
    for name, want in zip(names[:40], expected, strict=True):
        np.testing.assert_array_equal(read_image(landed[name], (28, 28)), want)


def test_more_streams_than_receivers_share_them_and_each_receiver_gets_the_decoder_once(three_receivers):
    target = ",".join(r.address for r in three_receivers[:2])
    result = _send("--target", target, "--streams", "4", "--batch-size", "32", str(SAMPLES))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == len(list(SAMPLES.iterdir())) and len(summary["streams"]) == 4
    assert [len(visible(r.out)) for r in three_receivers[:2]] == [2, 2]
    for receiver in three_receivers[:2]:
        assert len(list(receiver.models.glob("*.lln"))) == 1


def test_dead_receiver_in_the_list_is_skipped_by_round_robin(three_receivers, tmp_path):
    dead = three_receivers[2]
    dead.stop()
    target = ",".join(r.address for r in three_receivers)
    result = _send("--target", target, "--streams", "2", str(SAMPLES))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["written"] == len(list(SAMPLES.iterdir()))


def test_dry_run_predicts_exactly_what_a_send_puts_on_the_wire(three_receivers):
    dry = _send("--dry-run", str(SAMPLES))
    assert dry.returncode == 0, dry.stderr
    real = _send("--target", three_receivers[0].address, str(SAMPLES))
    assert real.returncode == 0, real.stderr
    predicted, sent = json.loads(dry.stdout), json.loads(real.stdout)
    assert predicted["dry_run"] and not sent["dry_run"]
    assert predicted["payload_bytes"] == sent["payload_bytes"]
    assert predicted["expected"]["psnr_db"] == pytest.approx(sent["expected"]["psnr_db"], abs=1e-9)
    assert predicted["model_bytes"] == sent["model_bytes"]
    # The send's wire bytes also count the finish and the summary: a few bytes more, never fewer.
    assert 0 <= sent["wire_bytes"] - predicted["wire_bytes"] < 64
    assert not visible(three_receivers[1].out)  # the dry run connected to nothing


def test_dry_run_text_report_and_unreadable_files(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "digit.png").write_bytes((SAMPLES / "test_00000.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")  # skipped: no image extension
    (folder / "notes.png").write_text("not an image")  # fails: claims to be one
    result = subprocess.run(
        [sys.executable, "-m", "latentlink.sender", "--dry-run", "--quiet", str(folder)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "dry run: 2 images, 1 would be sent, 1 would fail; nothing was sent" in result.stdout
    assert "WOULD FAIL notes.png: not a readable image" in result.stdout and "Traceback" not in result.stderr
    assert "skipped 1 files of the folder: no image extension: 1 (notes.txt)" in result.stdout
