"""The commands' entry points: what a command's process needs before numpy is imported, then its `main`.

Importing numpy loads OpenBLAS, which starts a worker thread per core, and
each spins for about a tenth of a second of CPU waiting for work. The commands
never give it any: they run BLAS on one thread (`cli_help.command_runtime`),
and they import numpy at once. So the environment says one thread first;
processes the commands start (reading and PNG workers) inherit it. Only the
commands: a program that imports latentlink keeps its own BLAS.
"""

from __future__ import annotations

import os

__all__ = ["demo", "latentlink", "receiver", "sender"]


def _before_numpy() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def sender() -> int:
    """The `sender` command."""
    _before_numpy()
    from latentlink.sender.cli import main

    return main()


def receiver() -> int:
    """The `receiver` command."""
    _before_numpy()
    from latentlink.receiver.cli import main

    return main()


def latentlink() -> int:
    """The `latentlink` command (compress, decompress, models)."""
    _before_numpy()
    from latentlink.codec.cli import main

    return main()


def demo() -> int:
    """The `latentlink-demo` command."""
    _before_numpy()
    from latentlink.sender.demo import main

    return main()
