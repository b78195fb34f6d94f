"""The committed generated code in shared/proto matches protos/ (run scripts/gen_protos.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the test extra")
    env = {**os.environ, "PYTHON": sys.executable}  # the interpreter that has grpcio-tools
    subprocess.run([str(REPO / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, cwd=REPO, env=env)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.iterdir())
    assert generated, "protoc produced nothing"
    for rel in generated:
        committed = REPO / "shared" / "proto" / rel
        assert committed.is_file(), f"{rel} is not committed: run scripts/gen_protos.sh"
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), f"{rel} is stale: run scripts/gen_protos.sh"
