"""A real receiver on a loopback port, and the shipped default model on the sender side."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from latentlink.receiver.server import create_server
from latentlink.sender.encode import BatchEncoder
from latentlink.shared.model_dir import default_model_dir, load_model_dir
from latentlink.shared.serde import OutputFormat


@dataclass
class RunningReceiver:
    address: str
    out: Path
    models: Path
    server: object

    def stop(self) -> None:
        self.server.stop(None).wait()


def start_receiver(
    out: Path,
    models: Path,
    token: str | None = None,
    max_sessions: int = 32,
    output_format: int = OutputFormat.PNG,
    **options,
) -> RunningReceiver:
    """Starts an in-process receiver on a free 127.0.0.1 port (`options`: more of create_server's)."""
    server, port = create_server(
        "127.0.0.1:0",
        out,
        models,
        device="cpu",
        token=token,
        max_sessions=max_sessions,
        output_format=output_format,
        **options,
    )
    server.start()
    return RunningReceiver(f"127.0.0.1:{port}", out, models, server)


@pytest.fixture
def receiver(tmp_path: Path):
    running = start_receiver(tmp_path / "out", tmp_path / "models")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def default_model():
    return load_model_dir(default_model_dir())


@pytest.fixture(scope="session")
def encoder(default_model) -> BatchEncoder:
    return BatchEncoder(default_model, device="cpu")


def free_port() -> int:
    """A loopback port that was free a moment ago (nothing listens on it now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def visible(folder: Path) -> list[Path]:
    """A receiver output folder's entries, without its bookkeeping (the hidden .journals folder)."""
    return [path for path in folder.iterdir() if not path.name.startswith(".")]


def visible_files(folder: Path) -> list[str]:
    """Every file under an output folder, relative, without the receiver's bookkeeping."""
    files = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(path.as_posix() for path in files if not path.parts[0].startswith("."))
