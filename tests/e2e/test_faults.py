"""Real sender and receiver processes over a link that breaks, corrupts or stalls: every image's fate is known."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from latentlink.shared.model_dir import default_model_dir, load_model_dir
from tests.conftest import SAMPLES
from tests.e2e.fault_relay import FaultRelay, Faults
from tests.e2e.test_cli import ENV, _command, receiver_process  # noqa: F401  (a fixture)

NAMES = sorted(p.name for p in SAMPLES.iterdir())


@pytest.fixture
def relay_to(receiver_process):  # noqa: F811
    """Makes a fault relay in front of the receiver; dropped before the receiver stops."""
    address, out, _ = receiver_process
    relays: list[FaultRelay] = []

    def make(faults: Faults) -> tuple[FaultRelay, Path]:
        relays.append(FaultRelay(int(address.rsplit(":", 1)[1]), faults))
        return relays[-1], out

    yield make
    for relay in relays:
        relay.close()


def _send_through(relay: FaultRelay, session: str, retry_for: float, *extra: str) -> tuple[dict, float, int]:
    started = time.monotonic()
    result = subprocess.run(
        [*_command("sender"), "--target", relay.address, "--session", session, "--json", "--batch-size", "32"]
        + ["--retry-for", str(retry_for), *extra, str(SAMPLES)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=240,
    )
    assert result.stdout, result.stderr[-3000:]
    return json.loads(result.stdout), time.monotonic() - started, result.returncode


def _check_every_fate(summary: dict, folder: Path) -> None:
    """Written once or reported failed, never both, never neither; a file on disk is never reported failed."""
    written, failed = summary["written"], summary["failed"]
    assert written + len(failed) == len(NAMES)
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    for name in NAMES:
        if name in failed:
            assert name not in on_disk or failed[name].startswith("unconfirmed:"), (name, failed[name])
        else:
            assert name in on_disk, name
    assert len(on_disk) <= len(NAMES)  # one file per image: a resent image replaces itself


def test_a_link_that_breaks_every_50_kb_delivers_everything_with_one_resumed_upload(relay_to):
    """Each reconnect resumes the decoder upload where it stopped (defect 2), and progress keeps it going."""
    relay, out = relay_to(Faults(cut_every=50_000))
    summary, _, code = _send_through(relay, "cut", retry_for=15)
    decoder_bytes = load_model_dir(default_model_dir()).decoder.size_bytes
    assert code == 0, summary["error"]
    assert summary["written"] == len(NAMES) and relay.connections >= 4
    # Restarting the 198 KB upload at byte 0 on every 50 KB connection could never finish: it resumed.
    assert summary["model_bytes"] == decoder_bytes
    _check_every_fate(summary, out / "cut")


@pytest.mark.parametrize(
    "faults",
    [
        Faults(flip_up={40_000, 215_000, 216_500}, flip_down={2_000}),
        Faults(flip_up={230_000}, flip_down={600, 1_400, 2_600}),
    ],
    ids=["mostly-upstream", "mostly-downstream"],
)
def test_flipped_bytes_in_either_direction_never_lose_or_double_an_image(relay_to, faults):
    relay, out = relay_to(faults)
    summary, _, code = _send_through(relay, "flips", retry_for=45)  # each break may take a keepalive to notice
    _check_every_fate(summary, out / "flips")
    assert code == 0 and summary["written"] == len(NAMES), (summary["error"], list(summary["failed"].items())[:3])


def test_a_stalled_link_ends_within_retry_for_of_the_last_progress(relay_to):
    relay, out = relay_to(Faults(stall_after=201_000))  # after the decoder and a few batches: silence
    summary, elapsed, code = _send_through(relay, "stall", retry_for=3)
    assert code == 1 and summary["error"] and summary["written"] < len(NAMES)
    assert elapsed < 3 + 8  # start-up and the first batches take a few seconds, then at most --retry-for
    _check_every_fate(summary, out / "stall")


def test_a_rerun_after_the_sender_died_sends_only_the_rest(tmp_path, receiver_process, mnist):  # noqa: F811
    """The receiver's journal tells a rerun what is in place (defect 5); changed images are sent again."""
    import signal

    import numpy as np

    from latentlink.sender.encode import BatchEncoder
    from latentlink.shared.image_io import read_image

    address, out, _ = receiver_process
    images = mnist[1][:2000].copy()
    np.save(tmp_path / "digits.npy", images)
    command = [*_command("sender"), "--target", address, "--session", "rerun", "--batch-size", "50", "--json"]
    sender = subprocess.Popen([*command, str(tmp_path / "digits.npy")], stdout=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 120
    while len(list((out / "rerun").glob("*.png"))) < 600 and time.monotonic() < deadline:
        time.sleep(0.02)
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    done = len(list((out / "rerun").glob("*.png")))
    assert 600 <= done < 2000, "the sender finished before it could be killed"
    images[1999] = 255 - images[1999]  # one image changed since: it must be sent again
    np.save(tmp_path / "digits.npy", images)
    rerun = subprocess.run([*command, str(tmp_path / "digits.npy")], capture_output=True, text=True, env=ENV)
    summary = json.loads(rerun.stdout)
    assert rerun.returncode == 0, summary["error"]
    assert summary["written"] == 2000 and summary["already_in_place"] >= done - 100  # a killed batch may be lost
    assert summary["sent"] == 2000 - summary["already_in_place"]
    # Only the rest went on the wire: the latents of the images not in place (~13.5 B each with q4), plus
    # 8 bytes of journal per image in place; a clean run puts all 2000 on it.
    assert summary["payload_bytes"] < 16 * summary["sent"] + 200
    assert summary["wire_bytes"] < 8 * summary["already_in_place"] + 25 * summary["sent"] + 4000
    codec = BatchEncoder(load_model_dir(default_model_dir()), "cpu")
    expected = codec.reconstruct(codec.encode(images))
    for i in [*range(0, 2000, 37), 1999]:
        np.testing.assert_array_equal(read_image(out / f"rerun/digits_{i:04d}.png", (28, 28)), expected[i])
