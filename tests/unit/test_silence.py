"""What C libraries print straight to descriptor 2 is kept off the terminal, and descriptor 2 comes back as it was."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = (
    "import os, sys\n"
    "from latentlink.shared.silence import descriptor_2_silenced\n"
    "{before}"
    "with descriptor_2_silenced():\n"
    "    os.write(2, b'inside\\n')\n"
    "print('open' if os.path.exists('/proc/self/fd/2') else 'closed')\n"
    "if os.path.exists('/proc/self/fd/2'):\n"
    "    os.write(2, b'after\\n')\n"
)


def _run(before: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(before=before)], capture_output=True, text=True)


def test_writes_to_descriptor_2_inside_are_dropped_and_after_arrive():
    result = _run()
    assert result.returncode == 0 and result.stdout == "open\n" and result.stderr == "after\n"


def test_a_closed_descriptor_2_is_closed_again_after():
    """A receiver started with `2>&-`: TensorFlow's import and LiteRT's start must not fail, nor leave /dev/null open
    where the process had nothing."""
    result = _run(before="os.close(2)\n")
    assert result.returncode == 0 and result.stdout == "closed\n"


def test_tensorflow_imports_with_descriptor_2_closed():
    """latentlink-train, or a GPU sender, started with `2>&-`: the quiet import of TensorFlow raised EBADF."""
    script = (
        "import os\n"
        "os.close(2)\n"
        "from latentlink.shared.tf_import import tensorflow\n"
        "print(tensorflow().constant(2.0).numpy(), 'open' if os.path.exists('/proc/self/fd/2') else 'closed')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "2.0 closed\n"
