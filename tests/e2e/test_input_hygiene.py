"""No silent garbage: what the real commands do with photos, deep images, stray files, bad targets and folders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES
from tests.e2e.test_cli import ENV, _command, _send, receiver_process  # noqa: F401  (a fixture)


def _photo(path: Path, seed: int = 0) -> None:
    """A colour 'photo': smooth colour gradients with texture, nothing like a digit."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:120, 0:160]
    rgb = np.stack([x * 1.5, y * 2.0, (x + y) * 0.8], axis=-1) + rng.normal(0, 30, (120, 160, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)


def _folder(tmp_path: Path, digits: int = 3, photos: int = 2) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(SAMPLES.iterdir())[:digits]:
        (folder / path.name).write_bytes(path.read_bytes())
    for i in range(photos):
        _photo(folder / f"photo{i}.jpg", seed=i)
    return folder


def test_resized_photos_are_announced_and_warned_about(tmp_path, receiver_process):  # noqa: F811
    address, out, _ = receiver_process
    result = _send("--target", address, "--resize", "--session", "mixed", str(_folder(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "--resize: 2 images scaled to fit 28x28, aspect ratio kept, padded with black" in result.stdout
    warning = [line for line in result.stderr.splitlines() if line.startswith("sender: warning:")]
    assert len(warning) == 1 and "2 images are predicted far below model rd-q4's 23.6 dB" in warning[0]
    assert "photo0.jpg" in warning[0] and "--min-psnr" in warning[0]
    assert "test_00000.png" not in warning[0], "the digits are in the model's domain"


def test_min_psnr_fails_out_of_domain_images_instead_of_sending_them(tmp_path, receiver_process):  # noqa: F811
    address, out, _ = receiver_process
    folder = _folder(tmp_path)
    result = _send("--target", address, "--resize", "--min-psnr", "15", "--json", "--session", "gated", str(folder))
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["written"] == 3 and summary["sent"] == 3
    for name in ("photo0.jpg", "photo1.jpg"):
        assert "is below --min-psnr 15 dB" in summary["failed"][name]
    assert sorted(p.name for p in (out / "gated").iterdir()) == ["test_00000.png", "test_00001.png", "test_00002.png"]
    dry = _send("--dry-run", "--resize", "--min-psnr", "15", str(folder))
    assert "3 would be sent, 2 would fail" in dry.stdout


def test_16_bit_greyscale_comes_back_as_well_as_8_bit(tmp_path):
    eight, sixteen = tmp_path / "eight", tmp_path / "sixteen"
    eight.mkdir(), sixteen.mkdir()
    for path in sorted(SAMPLES.iterdir())[:20]:
        digit = np.asarray(Image.open(path))
        Image.fromarray(digit).save(eight / path.name)
        Image.fromarray(digit.astype(np.uint16) * 257).save(sixteen / path.name)
    reports = [json.loads(_send("--dry-run", "--json", str(folder)).stdout) for folder in (eight, sixteen)]
    assert reports[0]["expected"]["psnr_db"] > 20
    assert reports[1]["expected"] == reports[0]["expected"]


def test_stray_files_are_skipped_and_counted_broken_images_fail_cleanly(tmp_path, receiver_process):  # noqa: F811
    address, _, _ = receiver_process
    folder = _folder(tmp_path, photos=0)
    (folder / "README.txt").write_text("what these are")
    (folder / "broken.png").write_text("not really a PNG")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "elsewhere").symlink_to(SAMPLES)
    result = _send("--target", address, str(folder))
    assert result.returncode == 1
    assert "3 written, 1 failed" in result.stdout
    assert "FAILED broken.png: not a readable image (UnidentifiedImageError: not a recognised image format)" in (
        result.stdout
    )
    assert "BytesIO" not in result.stdout + result.stderr
    assert (
        "skipped 3 files of the folder: dangling link: 1 (dangling.png); no image extension: 1 (README.txt); "
        "symlinked folder, not followed: 1 (elsewhere/)" in result.stdout
    )
    summary = json.loads(_send("--target", address, "--json", str(folder)).stdout)
    assert summary["skipped"]["README.txt"] == "no image extension"


def test_identical_failure_reasons_are_grouped(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(30):
        (folder / f"b{i:02d}.png").write_text("nope")
    result = _send("--dry-run", str(folder))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "WOULD FAIL" in line]
    assert lines == [
        "  WOULD FAIL 30 images: not a readable image (UnidentifiedImageError: not a recognised image format) "
        "(e.g. b00.png, b01.png, b02.png, ...)"
    ]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("localhost", "the port is required"),
        ("127.0.0.1:99999", "the port must be 1..65535"),
        ("http://127.0.0.1:50051", "without a scheme"),
    ],
)
def test_targets_gRPC_would_misread_are_usage_errors(target, message):
    result = _send("--target", target, str(SAMPLES / "test_00000.png"))
    assert result.returncode == 2
    assert result.stderr.startswith("sender: error:") and message in result.stderr and not result.stdout


def test_errors_go_to_stderr_and_no_progress_bar_off_a_terminal(tmp_path):
    result = _send("--target", "127.0.0.1:9", str(SAMPLES / "test_00000.png"))  # nothing listens on port 9
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.strip().startswith("sender: error:")
    assert "img/s" not in result.stderr and "sending" not in result.stderr  # no tqdm bar in a pipe


def _receiver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_command("receiver"), *args], capture_output=True, text=True, env=ENV, timeout=120)


def test_receiver_refusals_give_their_real_reason(tmp_path):
    (tmp_path / "a-file").write_text("")
    cases = [
        (["--listen", "nohost:abc"], 2, '--listen "nohost:abc" is not HOST:PORT'),
        (["--listen", "127.0.0.1:0", "--out", str(tmp_path / "a-file" / "x")], 2, "cannot write to --out"),
        (["--listen", "127.0.0.1:0", "--models", str(tmp_path / "a-file")], 2, "cannot write to --models"),
        (["--listen", "no-such-host.invalid:5000"], 1, 'cannot resolve "no-such-host.invalid"'),
    ]
    for args, code, message in cases:
        result = _receiver(*args, *([] if "--out" in args else ["--out", str(tmp_path / "out")]))
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "another receiver" not in result.stderr and "GRPC_VERBOSITY" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_progress_bar_on_a_terminal(receiver_process):  # noqa: F811
    """Where a person watches (stderr a terminal), the sender shows a bar with the bytes on the wire."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    address, _, _ = receiver_process
    watching, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 rows of 100 columns
    try:
        command = [*_command("sender"), "--target", address, str(SAMPLES)]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=terminal, env=ENV, timeout=120)
        os.close(terminal)
        shown = b""
        while chunk := _read_pty(watching):
            shown += chunk
    finally:
        os.close(watching)
    assert result.returncode == 0
    assert b"sending" in shown and b"img" in shown and b"on the wire" in shown


def _read_pty(fd: int) -> bytes:
    import os

    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end is closed: all was read
        return b""
