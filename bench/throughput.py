"""End-to-end throughput of latentlink against streaming the PNG files (bench/png_baseline.py).

Both run as real processes on this machine: a receiver, and a sender launched
once per run; constrained links go through bench/link_relay.py on loopback. For
each run the table gives images/s (launch to exit, and within the session), bytes
on the wire per image, time from launch to the first image on the wire and to
the first image written, CPU time per image of each process and their peak
memory. A second table splits the CPU per image by stage, each stage timed
alone in this process; "rest" is the difference to the processes' measured CPU
(gRPC, threads, Python glue). A third sets each array run against its slowest
stage alone (the default model's encoder or decoder, every core), measured in
the same run.

    python bench/throughput.py --data ../shared/data/mnist.npz            # everything (~10 min)
    python bench/throughput.py --data ../shared/data/mnist.npz --quick    # 10k images, no 60k runs
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from link_relay import LinkRelay  # noqa: E402
from png_baseline import pack_batch, unpack_batch  # noqa: E402
from startup import compile_bytecode  # noqa: E402

from latentlink.receiver.output import write_files_durably  # noqa: E402
from latentlink.shared.image_io import encode_png, read_image  # noqa: E402
from latentlink.shared.model_dir import default_model_dir, load_model_dir  # noqa: E402
from latentlink.shared.network_runtime import DEVICES  # noqa: E402
from latentlink.shared.proto import latentlink_pb2 as pb  # noqa: E402
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, MAX_BATCH_IMAGES  # noqa: E402
from latentlink.shared.serde import latents_from_batch, latents_to_batch  # noqa: E402
from latentlink.train.mnist import load_mnist  # noqa: E402

LINKS = {"loopback": (None, 0.0), "10 Mbit/s, 10 ms": (10e6, 0.010), "1 Mbit/s, 40 ms": (1e6, 0.040)}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PREDICT = "sender: predict quality (amortised: 1 image in 32 past the first 1,024)"


@dataclass
class Run:
    system: str
    inputs: str
    link: str
    images: int
    wall_s: float  # sender launch to exit
    session_s: float  # first image on the wire to last acknowledgement
    wire_bytes: int
    model_bytes: int
    first_sent_s: float  # launch to the first image on the wire
    first_written_s: float  # launch to the first image written on the receiver
    sender_cpu_s: float  # with its worker processes (machine_cpu_s)
    receiver_cpu_s: float
    sender_peak_mb: float
    receiver_peak_mb: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s

    @property
    def session_images_per_s(self) -> float:
        return self.images / self.session_s


class Receiver:
    """A receiver process (latentlink or the baseline) on a free loopback port."""

    def __init__(self, system: str, out: Path, models: Path, save_as: str = "png", device: str = "auto") -> None:
        if system == "latentlink":
            command = ["-m", "latentlink.receiver", "--listen", "127.0.0.1:0", "--out", str(out)]
            command += ["--models", str(models), "--device", device]
            command += ["--json", "--quiet", "--save-as", save_as]
        else:
            command = [str(REPO / "bench" / "png_baseline.py"), "receive", "--out", str(out)]
        self.process = subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.address = json.loads(self.process.stdout.readline())["address"]
        self.port = int(self.address.rsplit(":", 1)[1])

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK

    def peak_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def run_once(
    system: str, inputs: Path, label: str, link: str, work: Path, models: Path, extra=(), device: str = "auto"
) -> Run:
    """Starts a receiver, sends `inputs` through `link`, and measures both processes."""
    # Outputs stay until the end: creating files where thousands were just deleted is slow on ext4.
    out = Path(tempfile.mkdtemp(dir=work, prefix="out-"))
    warm_inputs(inputs)
    os.sync()  # earlier runs' dirty pages are not this run's to flush
    save_as = "npz" if inputs.suffix == ".npz" and system == "latentlink" else "png"
    receiver = Receiver(system, out, models, save_as, device)
    rate, latency = LINKS[link]
    try:
        with LinkRelay(("127.0.0.1", receiver.port), rate, latency) if rate else _Direct(receiver.address) as path:
            cpu_before = receiver.cpu_s()
            if system == "latentlink":
                command = [sys.executable, "-m", "latentlink.sender", "--target", path.address, "--json"]
                command += ["--device", device, *extra, str(inputs)]
            else:
                command = [sys.executable, str(REPO / "bench" / "png_baseline.py"), "send"]
                command += ["--target", path.address, str(inputs)]
            with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
                machine_before, bench_before = machine_cpu_s(), time.process_time()
                launched, started = time.time(), time.perf_counter()
                sender = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=REPO)
                _, status, usage = os.wait4(sender.pid, 0)  # peak memory (its CPU would miss its worker processes)
                wall = time.perf_counter() - started
                receiver_cpu = receiver.cpu_s() - cpu_before
                # The sender's side: all the machine's CPU, less the receiver's and this script's (the link relay).
                sender_cpu = machine_cpu_s() - machine_before - receiver_cpu - (time.process_time() - bench_before)
                sender.returncode = os.waitstatus_to_exitcode(status)
                stdout.seek(0), stderr.seek(0)
                report, stderr = json.loads(stdout.read()), stderr.read().decode(errors="replace")
            if report["written"] != report["images"]:
                raise RuntimeError(f"{system} on {label}: {report['written']} of {report['images']} written\n{stderr}")
            last_ack = launched + wall
            return Run(
                system=system,
                inputs=label,
                link=link,
                images=report["images"],
                wall_s=wall,
                session_s=last_ack - report["first_sent_at"],
                wire_bytes=report["wire_bytes"],
                model_bytes=report.get("model_bytes", 0),
                first_sent_s=report["first_sent_at"] - launched,
                first_written_s=report["first_written_at"] - launched,
                sender_cpu_s=sender_cpu,
                receiver_cpu_s=receiver_cpu,
                sender_peak_mb=usage.ru_maxrss / 1024,
                receiver_peak_mb=receiver.peak_mb(),
            )
    finally:
        receiver.stop()


def warm_inputs(inputs: Path) -> int:
    """Reads every input file (a folder's files, or one array), so that each run finds them in the page cache.

    The machine evicts files it has not read for a while: a run reading 60,000 PNGs from the disk took 20-35%
    longer launch to exit than one finding them cached (bench/RESULTS.md), and whichever system ran first on
    an input paid that for both. Returns the bytes read.
    """
    files = inputs.iterdir() if inputs.is_dir() else [inputs]
    return sum(len(file.read_bytes()) for file in files)


def settle_disk(work: Path, limit_s: float = 900.0) -> str:
    """Waits until creating files in `work` takes a steady time; says how long 512 files took, and whether it
    settled.

    The disk here is ext4 mounted with `discard`: for about five minutes after a full run's outputs (hundreds
    of thousands of files) are removed, creating a file costs many times its usual kernel CPU (90-440 against
    11-15 ms for 512 files), which fell on the baseline's folder runs more than on latentlink's. The probes'
    files stay until the run's outputs go: deleting them as it went kept the disk in that state.
    """
    times: list[float] = []
    deadline = time.monotonic() + limit_s
    while not steady(times) and time.monotonic() < deadline:
        if times:
            time.sleep(15)
        probe = Path(tempfile.mkdtemp(dir=work, prefix="out-probe-"))
        started = time.perf_counter()
        for i in range(512):
            (probe / f"{i:05d}.png").write_bytes(bytes(250))
        times.append(1e3 * (time.perf_counter() - started))
    state = "steady" if steady(times) else f"did not settle in {limit_s:.0f} s: {[round(t) for t in times[-3:]]} ms"
    return f"512 files created in {times[-1]:.1f} ms before the runs ({state})"


# 512 small files written from Python in more than this are a disk still busy (11-16 ms settled here; any local
# filesystem creates a small file in tens of µs): the twentieth session's second full run began "steady" at 112.
SETTLED_MS = 40.0


def steady(times: list[float], probes: int = 3, spread: float = 1.3) -> bool:
    """Whether the last `probes` times agree within a factor `spread`, none is above the fastest seen by more, and
    the disk is not busy (`SETTLED_MS`)."""
    last = times[-probes:]
    return len(last) == probes and max(last) <= spread * min(times) and min(last) <= SETTLED_MS


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, user and system) since it started.

    A sender's own CPU time (wait4) leaves out its worker processes: they are the forkserver's children, and
    nobody reaps them into the sender's account. The machine's total, less what the others spent, keeps them.
    """
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, *rest = map(int, stat.readline().split()[1:])
    return (user + nice + system + sum(rest[:2])) / CLOCK_TICK  # and irq, softirq (not steal: not ours)


class _Direct:
    def __init__(self, address: str) -> None:
        self.address = address

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def input_png(digit: np.ndarray) -> bytes:
    """A digit's input file: libpng, no row filter, run-length deflate (257.5 bytes a digit on average over the
    first 10,000), as every session's inputs since the fourth. Not the receiver's own encoder, whose files may
    change (zlib-ng's since the sixteenth session, 7% larger): the baseline sends these files."""
    return imagecodecs.png_encode(digit, filter=imagecodecs.PNG.FILTER.NONE, strategy=imagecodecs.PNG.STRATEGY.RLE)


def prepare(work: Path, data: Path, sizes: list[int]) -> dict[str, Path]:
    """Writes the MNIST digits as PNG folders of each size and as .npz arrays (cached in `work`)."""
    train, test = load_mnist(data)
    digits = np.concatenate([test, train])
    inputs = {}
    for n in sizes:
        folder = work / f"png-{n}"
        if not (folder / f"{n - 1:05d}.png").exists():
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i:05d}.png").write_bytes(input_png(digits[i]))
        inputs[f"folder {n:,}"] = folder
        array = work / f"digits-{n}.npz"
        if not array.exists():
            np.savez(array, images=digits[:n])
        inputs[f"array {n:,}"] = array
    return inputs


def stage_costs(folder: Path, count: int = 4096, batch: int = DEFAULT_BATCH_IMAGES) -> list[tuple[str, str, float]]:
    """CPU microseconds per image of each stage of both systems, each stage timed alone, as the commands run."""
    from latentlink.sender.encode import BatchEncoder
    from latentlink.shared.cli_help import command_runtime

    command_runtime()  # BLAS on one thread (its spinning threads would count), the runtime on every core

    model = load_model_dir(default_model_dir())
    codec = BatchEncoder(model, "cpu")
    paths = sorted(folder.iterdir())[:count]
    codec.encode(np.zeros((batch, 28, 28), np.uint8))
    codec.reconstruct(np.zeros((batch, model.latent_dim)))
    totals: dict[tuple[str, str], float] = {}

    @contextlib.contextmanager
    def clock(system: str, stage: str):
        started = time.process_time()
        yield
        totals[system, stage] = totals.get((system, stage), 0.0) + time.process_time() - started

    warm_inputs(folder)
    out = Path(tempfile.mkdtemp(dir=folder.parent))
    digest, ans = model.decoder.digest, pb.LATENT_ENCODING_ANS
    for first in range(0, len(paths), batch):
        chunk = paths[first : first + batch]
        names = [p.name for p in chunk]
        with clock("latentlink", "sender: read PNG"):
            pixels = np.stack([read_image(p, (28, 28)) for p in chunk])
        with clock("latentlink", "sender: encode"):
            latents = codec.encode(pixels)
        with clock("latentlink", PREDICT):
            codec.reconstruct(latents)
        with clock("latentlink", "sender: entropy-code and pack"):
            message = latents_to_batch(digest, ans, first, names, model.image_shape, latents, codec.tables)
        with clock("latentlink", "sender: serialise"):
            wire = pb.SenderMessage(latent_batch=message).SerializeToString()
        with clock("latentlink", "receiver: parse"):
            parsed = pb.SenderMessage.FromString(wire)
        with clock("latentlink", "receiver: entropy-decode"):
            decoded = latents_from_batch(parsed.latent_batch, model.latent_dim, codec.tables)
        with clock("latentlink", "receiver: decode"):
            images = codec.reconstruct(decoded.latents)
        with clock("latentlink", "receiver: encode PNG"):
            pngs = [encode_png(i) for i in images]
        with clock("latentlink", "receiver: durable write"):
            write_files_durably([(out / "ll" / n, d) for n, d in zip(names, pngs, strict=True)])
        with clock("baseline", "sender: read file"):
            files = [p.read_bytes() for p in chunk]
        with clock("baseline", "sender: pack"):
            framed = pack_batch(first, names, files)
        with clock("baseline", "receiver: unpack"):
            _, _, received = unpack_batch(framed)
        with clock("baseline", "receiver: durable write"):
            write_files_durably([(out / "bl" / n, d) for n, d in zip(names, received, strict=True)])
    shutil.rmtree(out, ignore_errors=True)
    per_image = {key: 1e6 * value / len(paths) for key, value in totals.items()}
    per_image["latentlink", PREDICT] /= 32
    return [(system, stage, us) for (system, stage), us in per_image.items()]


def networks_alone(array: Path, count: int = 10_240, batch: int = DEFAULT_BATCH_IMAGES) -> dict[str, float]:
    """Images/s of the default model's encoder and decoder, each alone as the commands run it (every core), best of
    3 over `count` digits of `array`."""
    from codec_speed import images_per_second

    from latentlink.sender.encode import BatchEncoder
    from latentlink.shared.cli_help import command_runtime

    command_runtime()
    codec = BatchEncoder(load_model_dir(default_model_dir()), "cpu")
    digits = np.load(array)["images"][:count]
    latents = codec.encode(digits)
    return {
        "sender: encode": images_per_second(codec.encode, digits, batch),
        "receiver: decode": images_per_second(codec.reconstruct, latents, batch),
    }


def print_against_stages(runs: list[Run], alone: dict[str, float]) -> None:
    """Each default-model array run, in session, against its slowest stage alone measured in this run."""
    stage, rate = min(alone.items(), key=lambda item: item[1])
    print("\n| inputs | images/s in session | slowest stage alone | its images/s | ratio |\n|---|---|---|---|---|")
    for r in runs:
        if r.system == "latentlink" and r.inputs.startswith("array") and "seed" not in r.inputs:
            ratio = r.session_images_per_s / rate
            print(f"| {r.inputs} | {r.session_images_per_s:,.0f} | {stage} | {rate:,.0f} | {ratio:.2f} |")


def baseline_ratio(run: Run, runs: list[Run]) -> float | None:
    """A latentlink run's images/s (launch to exit) over the baseline's on the same inputs and link, if one ran."""
    same = [r for r in runs if r.system == "baseline" and (r.inputs, r.link) == (run.inputs, run.link)]
    return run.images_per_s / same[-1].images_per_s if same and run.system != "baseline" else None


def print_runs(runs: list[Run]) -> None:
    """The main table, with each latentlink run's ratio to the baseline on the same inputs and link."""
    print(
        "| system | inputs | link | images/s (launch→exit) | images/s (in session) | × baseline | wire B/image "
        "| model B | first on wire s | first written s | sender CPU µs/img | receiver CPU µs/img "
        "| sender peak MB | receiver peak MB |"
    )
    print("|" + "---|" * 14)
    for r in runs:
        against = baseline_ratio(r, runs)
        ratio = "—" if against is None else f"{against:.2f}"
        print(
            f"| {r.system} | {r.inputs} | {r.link} | {r.images_per_s:,.0f} | {r.session_images_per_s:,.0f} | {ratio} "
            f"| {r.wire_bytes / r.images:.1f} | {r.model_bytes:,} | {r.first_sent_s:.2f} | {r.first_written_s:.2f} "
            f"| {1e6 * r.sender_cpu_s / r.images:.0f} | {1e6 * r.receiver_cpu_s / r.images:.0f} "
            f"| {r.sender_peak_mb:.0f} | {r.receiver_peak_mb:.0f} |"
        )


def print_stages(stages: list[tuple[str, str, float]], runs: list[Run]) -> None:
    print("\n| system | stage | CPU µs/image |\n|---|---|---|")
    for system in ("latentlink", "baseline"):
        rows = [(stage, us) for s, stage, us in stages if s == system]
        for stage, us in rows:
            print(f"| {system} | {stage} | {us:.1f} |")
        measured = [r for r in runs if r.system == system and r.link == "loopback" and r.inputs.startswith("folder")]
        if measured:
            whole = min(1e6 * (r.sender_cpu_s + r.receiver_cpu_s) / r.images for r in measured)
            rest = whole - sum(us for _, us in rows)
            print(f"| {system} | rest: gRPC, threads, start-up, glue (measured total − stages) | {rest:.1f} |")
            print(f"| {system} | **total, both processes, loopback folder run** | **{whole:.1f}** |")


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder_runs = [r for r in runs if r.inputs.startswith("folder") and r.model_bytes == 0]
    labels = sorted({(r.link, r.inputs) for r in folder_runs}, key=lambda k: (list(LINKS).index(k[0]), k[1]))
    fig, ax = plt.subplots(figsize=(9, 4))
    for offset, system in ((-0.2, "latentlink"), (0.2, "baseline")):
        values = [
            next((r.images_per_s for r in folder_runs if (r.link, r.inputs) == k and r.system == system), 0)
            for k in labels
        ]
        ax.bar(np.arange(len(labels)) + offset, values, 0.4, label=system)
    ax.set_xticks(np.arange(len(labels)), [f"{link}\n{inputs}" for link, inputs in labels], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("images/s, launch to exit")
    ax.set_title("latentlink vs streaming the PNG files, folder → folder (2 cores, no GPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="mnist.npz (default: $LATENTLINK_MNIST or Keras)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "latentlink-bench")
    parser.add_argument("--quick", action="store_true", help="10,000 images only, no 60,000-image runs")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "throughput.png")
    parser.add_argument(
        "--links",
        nargs="*",
        choices=list(LINKS),
        default=list(LINKS),
        help="folder runs on these links (none: arrays only)",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="latentlink's --device, both ends")
    args = parser.parse_args()
    if importlib.util.find_spec("matplotlib") is None:  # said now, not after the runs
        print("throughput: matplotlib is not installed: tables only, no plot", file=sys.stderr)
        args.plot = None
    args.work.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    big = 10_000 if args.quick else 60_000
    inputs = prepare(args.work, args.data, sorted({1_000, 10_000, big}))
    models = args.work / "decoders"
    runs: list[Run] = []

    def run(system: str, label: str, link: str, *extra: str) -> None:
        runs.append(run_once(system, inputs[label], label, link, args.work, models, extra, args.device))
        r = runs[-1]
        print(f"# {system:10s} {label:14s} {link:18s} {r.images_per_s:9,.0f} images/s", file=sys.stderr, flush=True)

    for old in args.work.glob("out-*"):
        shutil.rmtree(old, ignore_errors=True)
    disk = settle_disk(args.work)
    print(f"throughput: disk: {disk}", file=sys.stderr, flush=True)
    for link in args.links:
        shutil.rmtree(models, ignore_errors=True)  # the first run on each link transfers the decoder
        run("latentlink", "folder 10,000", link)
        run("latentlink", "folder 10,000", link)
        run("baseline", "folder 10,000", link)
        if big > 10_000:
            run("latentlink", f"folder {big:,}", link)
            run("baseline", f"folder {big:,}", link)
    run("latentlink", "array 10,000", "loopback")
    run("baseline", "array 10,000", "loopback")
    run("latentlink", f"array {big:,}", "loopback")
    run("baseline", f"array {big:,}", "loopback")
    # The same path with the seed's MLP, whose decoder costs a few µs instead of ~90: the pipeline's own ceiling.
    light = f"array {big:,}, seed-k64"
    inputs[light] = inputs[f"array {big:,}"]
    seed = str(REPO / "models" / "seed-k64")
    run("latentlink", light, "loopback", "--model", seed, "--batch-size", str(MAX_BATCH_IMAGES))
    run("latentlink", "folder 1,000", "loopback")
    print(f"disk: {disk}\n")
    print_runs(runs)
    print_stages(stage_costs(inputs["folder 10,000"]), runs)
    print_against_stages(runs, networks_alone(inputs[f"array {big:,}"]))
    for old in args.work.glob("out-*"):
        shutil.rmtree(old, ignore_errors=True)
    if args.plot:
        plot(runs, args.plot)
        print(f"\nplot: {args.plot.relative_to(REPO) if args.plot.is_relative_to(REPO) else args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
