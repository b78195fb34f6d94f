"""The commands' entry points: what a command's process needs before numpy is imported, then its `main`.

Importing numpy loads OpenBLAS, which starts a worker thread per core, and
each spins for about a tenth of a second of CPU waiting for work. The commands
never give it any: they run BLAS on one thread (`cli_help.command_runtime`),
and they import numpy at once. So the environment says one thread first;
processes the commands start (reading and PNG workers) inherit it. Only the
commands: a program that imports latentlink keeps its own BLAS.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

__all__ = ["demo", "latentlink", "receiver", "sender"]


def _command(module: str) -> Callable[[], int]:
    """An entry point that sets the environment, then imports `module` and runs its `main`."""

    def start() -> int:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        return importlib.import_module(module).main()

    return start


sender = _command("latentlink.sender.cli")
receiver = _command("latentlink.receiver.cli")
latentlink = _command("latentlink.codec.cli")  # compress, decompress, models
demo = _command("latentlink.sender.demo")
