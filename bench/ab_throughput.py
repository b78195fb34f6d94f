"""Two commits of latentlink against each other: whole runs of one input over one link, alternated in pairs.

Each commit is checked out in a worktree (a folder named latentlink, first on PYTHONPATH for both of its
processes) with its bytecode compiled; the pairs alternate which goes first, so that the machine's slow
spells fall on both alike. Each run is bench/throughput.run_once: launch to exit, in session, first image on
the wire, CPU per image. Outputs stay until the end (ext4 is slow to create files where many were deleted,
for minutes after: a second comparison on the same disk soon after measures the disk). `--work` on a tmpfs
(`/dev/shm/...`) keeps the disk out of a comparison of CPU-side changes.

    python bench/ab_throughput.py OLD_REV NEW_REV --data ../shared/data/mnist.npz \\
        [--link "1 Mbit/s, 40 ms"] [--images 10000] [--array] [--model seed-k64] [--batch-size 1024] \\
        [--pairs 6] [--work DIR]

`--array` sends the digits as one .npz (written as .npz batches) instead of a folder of PNGs; its runs are
compared in session (first image on the wire to the last acknowledgement), as bench/throughput.py reports them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from startup import compile_bytecode  # noqa: E402
from throughput import LINKS, Run, prepare, run_once, settle_disk  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST or Keras)")
    parser.add_argument("--link", choices=list(LINKS), default="1 Mbit/s, 40 ms")
    parser.add_argument("--images", type=int, default=10_000, help="the folder's PNGs (the array's digits)")
    parser.add_argument("--array", action="store_true", help="an .npz of digits rather than a folder of PNGs")
    parser.add_argument("--model", help="a shipped model's name (default: the sender's)")
    parser.add_argument("--batch-size", type=int, help="the sender's --batch-size (default: its own)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "latentlink-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    inputs = prepare(args.work, args.data, [args.images])[f"{'array' if args.array else 'folder'} {args.images:,}"]
    extra = ["--model", str(REPO / "models" / args.model)] if args.model else []
    extra += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    work = Path(tempfile.mkdtemp(prefix="ab-", dir=args.work))  # a fresh folder for this comparison's outputs
    trees = {}
    try:
        for side in ("old", "new"):
            trees[side] = work / side
            tree = trees[side] / "latentlink"
            commit = getattr(args, side)
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", str(tree), commit], check=True)
            compile_bytecode(tree)
        settle_disk(work)
        runs: dict[str, list[Run]] = {"old": [], "new": []}
        for pair in range(args.pairs + 1):  # a first run uploads the decoder, and is not counted
            for side in ("old", "new") if pair % 2 else ("new", "old"):
                os.environ["PYTHONPATH"] = str(trees[side])
                run = run_once("latentlink", inputs, side, args.link, work, work / "decoders", extra)
                if pair:
                    runs[side].append(run)
                    print(
                        f"# {side} {run.wall_s:.3f} s to exit, {run.images / run.session_s:,.0f} images/s in session, "
                        f"first image {run.first_sent_s:.3f} s",
                        flush=True,
                    )
        print_pairs(args, runs)
    finally:
        os.environ.pop("PYTHONPATH", None)
        for side in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees[side] / "latentlink")])
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_pairs(args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    kind = "array" if args.array else "folder"
    model = f", {args.model}" if args.model else ""
    print(f"\n{args.images:,} images, {kind}{model}, {args.link}, {args.pairs} alternated pairs\n")
    print(
        "| tree | launch → exit (s) | median | images/s in session, median | first on the wire (s), median "
        "| sender / receiver CPU µs/image |"
    )
    print("|---|---|---|---|---|---|")
    for side in ("old", "new"):
        walls = sorted(run.wall_s for run in runs[side])
        rate = statistics.median(run.images / run.session_s for run in runs[side])
        first = statistics.median(run.first_sent_s for run in runs[side])
        sender = [1e6 * run.sender_cpu_s / run.images for run in runs[side]]
        receiver = [1e6 * run.receiver_cpu_s / run.images for run in runs[side]]
        print(
            f"| {side} (`{getattr(args, side)}`) | {' / '.join(f'{w:.3f}' for w in walls)} | "
            f"{statistics.median(walls):.3f} | {rate:,.0f} | {first:.3f} | {min(sender):.0f}-{max(sender):.0f} / "
            f"{min(receiver):.0f}-{max(receiver):.0f} |"
        )
    ratio = statistics.median(r.wall_s for r in runs["old"]) / statistics.median(r.wall_s for r in runs["new"])
    rates = [statistics.median(r.images / r.session_s for r in runs[side]) for side in ("old", "new")]
    print(f"\nnew / old (medians): launch to exit {ratio:.2f}x faster, in session {rates[1] / rates[0]:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
