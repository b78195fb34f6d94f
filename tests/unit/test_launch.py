"""The commands set their process up before numpy is imported: OpenBLAS starts no threads to spin for nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

COMMANDS = {"sender": "sender", "receiver": "receiver", "latentlink": "latentlink", "latentlink-demo": "demo"}
# Prints what OPENBLAS_NUM_THREADS said when numpy was first imported (OpenBLAS reads it as it loads).
REPORT = (
    "import atexit, os, sys\n"
    "seen = []\n"
    "def hook(event, args):\n"
    "    if event == 'import' and args[0] == 'numpy' and not seen:\n"
    "        seen.append(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    "sys.addaudithook(hook)\n"
    "atexit.register(lambda: print('at numpy import', seen))\n"
)


def _at_numpy_import(start: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", REPORT + start], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("function", sorted(set(COMMANDS.values())))
def test_each_command_imports_numpy_with_one_blas_thread(function):
    start = f"import sys\nfrom latentlink.shared import launch\nsys.argv = ['x', '--version']\nlaunch.{function}()\n"
    assert _at_numpy_import(start) == "at numpy import ['1']"


@pytest.mark.parametrize("module", ["latentlink", "latentlink.sender", "latentlink.receiver"])
def test_python_dash_m_goes_through_the_same_start(module):
    start = f"import runpy, sys\nsys.argv = ['x', '--version']\nrunpy.run_module('{module}', run_name='__main__')\n"
    assert _at_numpy_import(start) == "at numpy import ['1']"


def test_the_commands_are_the_launchers():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert {name: scripts[name] for name in COMMANDS} == {
        name: f"latentlink.shared.launch:{function}" for name, function in COMMANDS.items()
    }
