"""Checks an installed latentlink as a user meets it: run by .ci/run in a fresh venv, from outside the checkout.

Usage: python check_installed.py CHECKOUT WHEEL
Everything below uses the installed commands and package only; CHECKOUT is
named so that the check can prove nothing is imported from it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    if result.returncode != 0:
        sys.exit(f"FAILED ({result.returncode}): {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def check_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"latentlink", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    shipped = (
        "models/q4/decoder.lln",
        "models/photo-q2/decoder.lln",
        "samples/mnist/test_00000.png",
        "protos/container.proto",
        "py.typed",
    )
    for needed in (f"latentlink/{path}" for path in shipped):
        assert needed in names, f"{needed} is not in the wheel"
    license_files = [name for name in names if name.endswith("/LICENSE")]
    assert license_files, "no LICENSE in the wheel"
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB, top level {sorted(top)}")


def main() -> None:
    checkout, wheel = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    check_wheel_contents(wheel)
    work = Path(tempfile.mkdtemp(prefix="latentlink-installed-"))
    home = work / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("PYTHONPATH", None)
    bin_dir = Path(sys.executable).parent

    def command(name: str) -> str:
        return str(bin_dir / name)

    # The package comes from site-packages; importing it changes neither the environment nor $HOME, and
    # using it leaves none of our settings behind (TensorFlow's own import sets TF2_BEHAVIOR and a few more).
    probe = (
        "import os; before = dict(os.environ); "
        "import latentlink, latentlink.sender.cli, latentlink.receiver.cli, latentlink.codec.cli; "
        "assert dict(os.environ) == before, 'importing latentlink changed os.environ'; "
        "import numpy as np; from latentlink import compress, decompress; "
        "x = np.zeros((2, 28, 28), np.uint8); assert decompress(compress(x)).shape == x.shape; "
        "ours = ('TF_CPP_MIN_LOG_LEVEL', 'GRPC_VERBOSITY', 'KERAS_HOME'); "
        "assert all(os.environ.get(k) == before.get(k) for k in ours), 'compress left settings behind'; "
        "print(latentlink.__file__)"
    )
    location = run(sys.executable, "-c", probe, cwd=work, env=env).stdout.strip()
    assert not Path(location).resolve().is_relative_to(checkout), f"imported from the checkout: {location}"
    assert not any(home.iterdir()), f"files written in $HOME: {list(home.rglob('*'))}"
    for name in ("sender", "receiver", "latentlink", "latentlink-train", "latentlink-demo"):
        run(command(name), "--version", cwd=work, env=env)
    run(sys.executable, "-m", "latentlink", "--version", cwd=work, env=env)
    run(command("latentlink"), "models", cwd=work, env=env)

    # A receiver and a sender with the default model on a few of the shipped sample digits.
    samples = Path(location).parent / "samples" / "mnist"
    images = work / "images"
    images.mkdir()
    for path in sorted(samples.iterdir())[:5]:
        shutil.copy(path, images / path.name)
    receiver = subprocess.Popen(
        [command("receiver"), "--listen", "127.0.0.1:0", "--out", "received", "--quiet"],
        cwd=work, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        match = re.search(r"listening on \S+:(\d+)", receiver.stdout.readline())
        assert match, "the receiver did not start"
        sent = run(command("sender"), "--target", f"127.0.0.1:{match.group(1)}", "--session", "ci", "images",
                   cwd=work, env=env)  # fmt: skip
        assert "5 written, 0 failed" in sent.stdout, sent.stdout
        # Photos: a colour and a grey image of odd sizes pick the photo ladder and come back as they were.
        make = (
            "import numpy as np; from PIL import Image; import os; os.mkdir('photos'); "
            "y, x = np.mgrid[:70, :90]; rgb = np.stack([(x * 2) % 256, (y * 3) % 256, (x + y) % 256], 2); "
            "Image.fromarray(rgb.astype(np.uint8)).save('photos/colour.png'); "
            "Image.fromarray(((x * y) % 256).astype(np.uint8)[:33, :51]).save('photos/grey.png')"
        )
        run(sys.executable, "-c", make, cwd=work, env=env)
        sent = run(command("sender"), "--target", f"127.0.0.1:{match.group(1)}", "--session", "ci-photos",
                   "photos", cwd=work, env=env)  # fmt: skip
        assert "2 written, 0 failed" in sent.stdout and "model photo-q2" in sent.stdout, sent.stdout
        check = (
            "from PIL import Image; "
            "a, b = Image.open('received/ci-photos/colour.png'), Image.open('received/ci-photos/grey.png'); "
            "assert (a.size, a.mode, b.size, b.mode) == ((90, 70), 'RGB', (51, 33), 'L'), (a, b)"
        )
        run(sys.executable, "-c", check, cwd=work, env=env)
    finally:
        receiver.terminate()
        receiver.wait(timeout=60)

    # The library's round trip equals what the receiver wrote, pixel for pixel.
    compare = (
        "import sys, numpy as np; from pathlib import Path; from PIL import Image; "
        "from latentlink import compress, decompress; "
        "names = sorted(p.name for p in Path('images').iterdir()); "
        "x = np.stack([np.asarray(Image.open(Path('images') / n)) for n in names]); "
        "written = np.stack([np.asarray(Image.open(Path('received/ci') / n)) for n in names]); "
        "assert np.array_equal(decompress(compress(x)), written), 'library and receiver differ'"
    )
    run(sys.executable, "-c", compare, cwd=work, env=env)
    run(command("latentlink"), "compress", "images", "-o", "images.llnk", cwd=work, env=env)
    run(command("latentlink"), "decompress", "images.llnk", "-o", "restored", cwd=work, env=env)
    for name in sorted(p.name for p in images.iterdir()):
        assert (work / "restored" / name).read_bytes() == (work / "received" / "ci" / name).read_bytes(), name
    demo = run(command("latentlink-demo"), "--workdir", "demo", cwd=work, env=env)
    assert "300 written, 0 failed" in demo.stdout, demo.stdout
    shutil.rmtree(work)
    print("installed package: all checks passed")


if __name__ == "__main__":
    main()
