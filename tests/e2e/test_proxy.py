"""Scale-out behind a real nginx: sessions pinned to one receiver by their name, resume, failover, drain, TLS.

Every process is real: `receiver` and `sender` commands on loopback ports, nginx with a generated config
(`nginx_proxy.render_config`, the configuration docs/deployment.md gives). Skipped only where nginx is not
installed (`.ci/run` installs it when it can).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from latentlink.shared.image_io import read_image
from tests.conftest import SAMPLES, listening_port
from tests.e2e.conftest import free_port, visible, visible_files
from tests.e2e.nginx_proxy import NGINX, start_nginx
from tests.e2e.test_cli import ENV, _command

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")

IMAGES = 2000  # a session long enough to break in the middle


class Receiver:
    """A `receiver` process on a fixed loopback port, restartable on it with the same folders."""

    def __init__(self, folder: Path, name: str, *extra: str) -> None:
        self.folder, self.name, self.extra = folder, name, extra
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.out = folder / "out"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = [*_command("receiver"), "--listen", self.address, "--out", str(self.out), "--quiet"]
        command += ["--models", str(self.folder / "models"), "--name", self.name, "--grace", "20", *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert listening_port(self.process) == self.port

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def sessions(self) -> list[str]:
        return sorted(p.name for p in visible(self.out)) if self.out.exists() else []


@pytest.fixture
def receivers(tmp_path: Path):
    started = [Receiver(tmp_path / f"rx{i}", f"rx{i}") for i in range(3)]
    yield started
    for receiver in started:
        receiver.stop()


def _sender(target: str, *args: str) -> subprocess.Popen:
    command = [*_command("sender"), "--target", target, "--json", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _finish(sender: subprocess.Popen, timeout: float = 240) -> dict:
    stdout, stderr = sender.communicate(timeout=timeout)
    assert stdout.strip(), stderr[-2000:]
    summary = json.loads(stdout)
    assert sender.returncode == 0, (summary["error"], stderr[-2000:])
    return summary


def _holder(receivers: list[Receiver], session: str) -> list[Receiver]:
    return [r for r in receivers if session in r.sessions()]


@pytest.fixture
def digits(tmp_path: Path, mnist) -> Path:
    path = tmp_path / "digits.npy"
    np.save(path, mnist[1][:IMAGES])
    return path


def _wait_written(receivers: list[Receiver], session: str, at_least: int) -> Receiver:
    """The receiver that holds `session`, once it has written `at_least` of its images."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for receiver in receivers:
            if sum(1 for _ in (receiver.out / session).glob("*.png")) >= at_least:
                return receiver
        time.sleep(0.02)
    raise AssertionError(f"session {session} never reached {at_least} images")


def test_six_senders_of_two_sessions_each_land_every_session_on_one_receiver(tmp_path, receivers, encoder):
    proxy = start_nginx(tmp_path / "nginx", [r.address for r in receivers])
    try:
        senders = [_sender(proxy.address, "--streams", "2", "--session", f"job{i}", str(SAMPLES)) for i in range(6)]
        with ThreadPoolExecutor(len(senders)) as pool:
            summaries = list(pool.map(_finish, senders))
    finally:
        proxy.stop()
    names = sorted(p.name for p in SAMPLES.iterdir())
    sessions = [f"job{i}.{k}" for i in range(6) for k in (1, 2)]
    landed: dict[str, list[str]] = {}
    for session in sessions:
        holders = _holder(receivers, session)
        assert len(holders) == 1, f"{session} is on {[r.name for r in holders]}"
        landed[session] = sorted(p.name for p in (holders[0].out / session).iterdir())
    # every image of every job once (its two sessions share the folder's images), nothing else anywhere
    for i in range(6):
        assert sorted(landed[f"job{i}.1"] + landed[f"job{i}.2"]) == names
    assert sorted(s for r in receivers for s in r.sessions()) == sorted(sessions)
    assert len({_holder(receivers, s)[0].name for s in sessions}) > 1, "12 sessions, all hashed to one receiver"
    for summary in summaries:
        assert summary["written"] == len(names) and not summary["failed"] and not summary["written_on"]
        for stream in summary["streams"]:
            assert stream["receivers"] == {_holder(receivers, stream["session_dir"])[0].name: stream["written"]}
    # each session's routing is the proxy's: the access log shows one upstream per session
    for session, upstream, status in proxy.routes():
        assert status == "200" and upstream == _holder(receivers, session)[0].address
    # pixel-identical to a direct send: the model's reconstruction of each original
    originals = np.stack([read_image(SAMPLES / n, (28, 28)) for n in names[:40]])
    expected = encoder.reconstruct(encoder.encode(originals))
    for name, want in zip(names[:40], expected, strict=True):
        session = "job3.1" if name in landed["job3.1"] else "job3.2"
        path = _holder(receivers, session)[0].out / session / name
        np.testing.assert_array_equal(read_image(path, (28, 28)), want)


def test_a_session_resumes_on_its_own_receiver_after_that_receiver_restarts(tmp_path, receivers, digits):
    # Patience for a restart: the resume meets 502s until the receiver is back, up to max_fails of them.
    proxy = start_nginx(tmp_path / "nginx", [r.address for r in receivers], max_fails=6, fail_timeout_s=30)
    try:
        sender = _sender(proxy.address, "--session", "sticky", "--batch-size", "8", "--retry-for", "60", str(digits))
        pinned = _wait_written(receivers, "sticky", 300)
        pinned.kill()  # every connection between nginx and it breaks mid-session
        pinned.start()
        summary = _finish(sender)
    finally:
        proxy.stop()
    assert summary["written"] == IMAGES and summary["reconnects"] >= 1
    assert summary["receivers"] == {pinned.name: IMAGES} and not summary["written_on"]
    assert [_holder(receivers, "sticky")] == [[pinned]]
    assert visible_files(pinned.out) == sorted(f"sticky/digits_{i:04d}.png" for i in range(IMAGES))
    upstreams = {upstream for session, upstream, _ in proxy.routes() if session == "sticky"}
    assert upstreams == {pinned.address}


def test_failover_reports_what_the_dead_receiver_holds_and_delivers_the_rest(tmp_path, receivers, digits, encoder):
    proxy = start_nginx(tmp_path / "nginx", [r.address for r in receivers], max_fails=2, fail_timeout_s=60)
    try:
        sender = _sender(proxy.address, "--session", "moving", "--batch-size", "8", str(digits))
        dead = _wait_written(receivers, "moving", 300)
        dead.kill()  # for good
        summary = _finish(sender)
    finally:
        proxy.stop()
    assert summary["written"] == IMAGES and not summary["failed"]
    placement = summary["written_on"]
    assert set(placement) == {r.name for r in _holder(receivers, "moving")} and dead.name in placement
    # it had written 300 when it died; some of their acknowledgements may have died with it
    assert len(placement) == 2 and 0 < summary["receivers"][dead.name] <= len(visible_files(dead.out))
    reported = [name for names in placement.values() for name in names]
    assert sorted(reported) == [f"digits_{i:04d}.png" for i in range(IMAGES)]  # each image reported once
    images = np.load(digits)
    expected = encoder.reconstruct(encoder.encode(images))
    by_name = {r.name: r for r in receivers}
    for receiver_name, names in placement.items():
        files = set(visible_files(by_name[receiver_name].out))
        for name in names:
            assert f"moving/{name}" in files, f"{name} reported on {receiver_name}, but not on its disk"
        for name in names[::25]:
            index = int(name.removesuffix(".png").rsplit("_", 1)[1])
            path = by_name[receiver_name].out / "moving" / name
            np.testing.assert_array_equal(read_image(path, (28, 28)), expected[index])


def test_a_draining_receiver_gets_no_new_sessions(tmp_path, receivers, digits):
    proxy = start_nginx(tmp_path / "nginx", [r.address for r in receivers], max_fails=2, fail_timeout_s=60)
    draining = receivers[0]
    try:
        # a long session straight to the receiver keeps it draining (up to --grace) after SIGTERM
        open_session = _sender(draining.address, "--session", "long", "--batch-size", "4", str(digits))
        _wait_written([draining], "long", 100)
        draining.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert draining.process.poll() is None, "the receiver should still be finishing its open session"
        senders = [_sender(proxy.address, "--session", f"new{i}", str(SAMPLES)) for i in range(9)]
        summaries = [_finish(s) for s in senders]
        assert _finish(open_session)["written"] == IMAGES  # the open session was let finish
    finally:
        proxy.stop()
    assert all(s["written"] == len(list(SAMPLES.iterdir())) for s in summaries)
    assert draining.sessions() == ["long"]
    assert sorted(s for r in receivers[1:] for s in r.sessions()) == [f"new{i}" for i in range(9)]


def test_tls_ends_at_nginx_and_the_token_passes_through(tmp_path, pki):
    token = tmp_path / "token"
    token.write_text("proxy-secret-token-0123456789\n")
    receivers = [Receiver(tmp_path / f"rx{i}", f"rx{i}", "--token-file", str(token)) for i in range(3)]
    certificate = (pki / "receiver.pem", pki / "receiver.key")
    proxy = start_nginx(tmp_path / "nginx", [r.address for r in receivers], tls=certificate)
    try:
        tls = ["--tls-ca", str(pki / "ca.pem")]
        good = _finish(_sender(proxy.address, *tls, "--token-file", str(token), str(SAMPLES)))
        assert good["written"] == len(list(SAMPLES.iterdir()))
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token-000000000000000\n")
        refused = _sender(proxy.address, *tls, "--token-file", str(wrong), str(SAMPLES))
        stdout, _ = refused.communicate(timeout=120)
        assert refused.returncode != 0 and "refused the token" in json.loads(stdout)["error"]
        plaintext = _sender(proxy.address, "--token-file", str(token), str(SAMPLES))
        plaintext.communicate(timeout=120)
        assert plaintext.returncode != 0
    finally:
        proxy.stop()
        for receiver in receivers:
            receiver.stop()
    assert sum(len(r.sessions()) for r in receivers) == 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    from tests.e2e.test_tls import _issue

    folder = tmp_path_factory.mktemp("pki")
    ca = _issue(folder, "ca")
    _issue(folder, "receiver", ca, server=True)
    return folder
