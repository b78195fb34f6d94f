"""The library and the `latentlink` command give exactly what a receiver writes; importing changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentlink import compress, decompress
from latentlink.sender.session import send_images
from latentlink.shared.image_io import find_sources, read_image
from tests.conftest import SAMPLES

COMMANDS = ["sender", "receiver", "latentlink", "latentlink-train", "latentlink-demo"]


def _latentlink(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "latentlink", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_library_round_trip_equals_the_receivers_files_pixel_for_pixel(receiver, encoder):
    sources = find_sources(SAMPLES, (28, 28))
    report = send_images(receiver.address, sources, encoder)  # the default batch size, as compress uses
    assert report.ok
    originals = np.stack([s.load() for s in sources])
    written = np.stack([read_image(receiver.out / report.written[s.name], (28, 28)) for s in sources])
    np.testing.assert_array_equal(decompress(compress(originals)), written)


def test_the_latentlink_command_compresses_inspects_and_decompresses(tmp_path, receiver, encoder):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(SAMPLES.iterdir())[:12]:
        (images / path.name).write_bytes(path.read_bytes())
    packed = _latentlink("compress", str(images), "-o", "digits.llnk", cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    assert "12 images -> digits.llnk" in packed.stdout and "B per image" in packed.stdout
    info = _latentlink("info", "digits.llnk", cwd=tmp_path)
    assert "12 images of 28x28" in info.stdout and "model rd-q4" in info.stdout
    restored = _latentlink("decompress", "digits.llnk", "-o", "restored", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    report = send_images(receiver.address, find_sources(images, (28, 28)), encoder)
    for name in sorted(p.name for p in images.iterdir()):  # the same PNG files a receiver writes
        assert (tmp_path / "restored" / name).read_bytes() == (receiver.out / report.written[name]).read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"hello", "not a latentlink container"), (None, "checksum: truncated or corrupt")],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    if content is None:
        content = compress(np.zeros((3, 28, 28), np.uint8))[:-4]
    (tmp_path / "bad.llnk").write_bytes(content)
    for command in ("decompress", "info"):
        result = _latentlink(command, "bad.llnk", *(["-o", "out"] if command == "decompress" else []), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == f"latentlink: error: {message}" or message in result.stderr
    missing = _latentlink("info", "nope.llnk", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.llnk" in missing.stderr and "Traceback" not in missing.stderr


def test_models_lists_every_shipped_model(tmp_path):
    result = _latentlink("models", cwd=tmp_path)
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert {"q1", "q2", "q3", "rd-q4", "q5", "conv-k64", "seed-k64", "photo-q1", "photo-q2", "photo-q3"} <= listed
    assert "--quality 4 (default)" in result.stdout and "23.64 dB" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_version(command):
    from latentlink import __version__

    binary = Path(sys.executable).parent / command
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"{command} (latentlink) {__version__}"


def test_importing_and_using_latentlink_leaves_the_environment_and_home_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import os; before = dict(os.environ)\n"
        "import latentlink, latentlink.sender.cli, latentlink.receiver.cli, latentlink.codec.cli, latentlink.shared\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "import sys; assert 'grpc' not in sys.modules, 'gRPC imported before a command can quieten its logs'\n"
        "import numpy as np\n"
        "latentlink.decompress(latentlink.compress(np.zeros((2, 28, 28), np.uint8)))\n"
        "ours = ('TF_CPP_MIN_LOG_LEVEL', 'GRPC_VERBOSITY', 'KERAS_HOME')\n"
        "assert all(os.environ.get(k) == before.get(k) for k in ours), [os.environ.get(k) for k in ours]\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "KERAS_HOME")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**env, "HOME": str(home)}, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert not list(home.rglob("*")), "files written in the home folder"


def test_no_module_imports_the_old_top_level_names():
    """Inside the package everything is latentlink.*: a bare `shared.` import works only from the checkout."""
    import ast

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("codec", "receiver", "sender", "shared", "train"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in
                              ("shared", "sender", "receiver", "train", "codec")]  # fmt: skip
    assert not offenders


@pytest.mark.parametrize(
    ("module", "step", "args"),
    [("latentlink.codec.cli", "_compress", ["compress", "x", "-o", "y"]), ("latentlink.train.cli", "_train", [])],
)
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, module, step, args):
    """A KeyboardInterrupt inside the command ends it with one line (the sender's, from a real SIGINT: test_cli)."""
    import importlib

    cli = importlib.import_module(module)

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "quiet_process", lambda: None)  # this process's environment stays as it is
    monkeypatch.setattr(cli, "command_runtime", lambda: None, raising=False)
    monkeypatch.setattr(cli, step, interrupted)
    train_args = ["--out", "model"] if step == "_train" else []
    assert cli.main([*args, *train_args]) == 130
    command = "latentlink-train" if step == "_train" else "latentlink"
    assert capsys.readouterr().err == f"{command}: interrupted\n"
