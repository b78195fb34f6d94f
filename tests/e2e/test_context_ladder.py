"""The context-prior rungs through real processes: a sender and a receiver on loopback, files on disk."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from latentlink import compress, decompress
from latentlink.shared.image_io import read_image
from tests.conftest import SAMPLES
from tests.e2e.test_cli import _send, receiver_process  # noqa: F401  (a fixture)


@pytest.mark.parametrize(("quality", "effort"), [(1, 0), (2, 1), (3, 0)])
def test_context_rungs_write_what_the_library_decodes(receiver_process, tmp_path, quality, effort):  # noqa: F811
    """The receiver decodes the context prior latent by latent from its own copy of the decoder (sent in the
    handshake): every written digit equals the library's decode of the same (searched) latents."""
    address, out, _ = receiver_process
    folder = tmp_path / "digits"
    folder.mkdir()
    names = sorted(path.name for path in SAMPLES.glob("*.png"))[:40]
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)
    result = _send("--target", address, "--json", "--quality", str(quality), "--effort", str(effort), str(folder))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model"] == f"q{quality}" and summary["written"] == len(names) and not summary["failed"]
    originals = np.stack([read_image(folder / name, (28, 28)) for name in names])
    expected = decompress(compress(originals, quality=quality, effort=effort))
    for name, image in zip(names, expected, strict=True):
        with Image.open(out / summary["session_dir"] / name) as written:
            np.testing.assert_array_equal(np.asarray(written), image, err_msg=name)
