"""Start-up and idle memory: receiver launch -> accepting, its memory idle and after a session, sender launch -> first
image on the wire, sender launch -> exit for the 300 sample digits (decoder transfer included). Real processes,
loopback, the installed commands; best and median of several runs.

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compile_bytecode(tree: Path = REPO) -> None:
    """Compiles a tree's bytecode, as pip does when it installs a wheel, so that the runs start as installed.

    A checkout installed with -e writes its bytecode on first use, unless PYTHONDONTWRITEBYTECODE is set (as
    on the machines here): every process then compiled about 35 modules anew, some 60 ms of its start-up that
    an installed copy never pays.
    """
    import compileall

    compileall.compile_dir(tree, quiet=1, rx=re.compile(r"[/\\](\.venv|\.git|build|dist|tests)[/\\]"))


def one_run(work: Path) -> dict[str, float]:
    """Starts a receiver, waits until it accepts, sends the sample digits once; returns the timings."""
    port, out = _free_port(), work / "out"
    started = time.perf_counter()
    receiver = subprocess.Popen(
        [BIN / "receiver", "--listen", f"127.0.0.1:{port}", "--out", out, "--models", work / "decoders"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                break
            except OSError:
                time.sleep(0.002)
        accepting = time.perf_counter() - started
        time.sleep(1.0)
        idle = _rss_mb(receiver.pid)
        launch, started = time.time(), time.perf_counter()
        sent = subprocess.run(
            [BIN / "sender", "--target", f"127.0.0.1:{port}", REPO / "samples" / "mnist", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        total = time.perf_counter() - started
        summary = json.loads(sent.stdout)
        return {
            "receiver launch -> accepting (s)": accepting,
            "receiver idle memory (MB)": idle,
            "receiver memory after a session (MB)": _rss_mb(receiver.pid),
            "sender launch -> first image on the wire (s)": summary["first_sent_at"] - launch,
            "sender launch -> exit, 300 digits (s)": total,
        }
    finally:
        receiver.terminate()
        receiver.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compile_bytecode()
    runs = []
    for _ in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="latentlink-startup-"))
        try:
            runs.append(one_run(work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.runs} runs, each with a fresh receiver (so the sender uploads the decoder)\n")
    print("| measure | best | median |")
    print("|---|---|---|")
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"| {key} | {min(values):.2f} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
