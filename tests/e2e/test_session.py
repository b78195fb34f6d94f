"""Sender sessions against a real in-process receiver on loopback."""

from __future__ import annotations

import queue
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from latentlink.sender.cli import explain_failure
from latentlink.sender.session import send_images
from latentlink.shared.image_io import SourceImage, find_sources, read_image
from latentlink.shared.model_dir import default_model_dir
from latentlink.shared.proto import latentlink_pb2_grpc
from latentlink.shared.serde import ENCODING_NAMES, wire_latents
from tests.conftest import SAMPLES
from tests.e2e.conftest import free_port, start_receiver


def _sources(folder: Path = SAMPLES, count: int | None = None):
    return find_sources(folder, (28, 28))[:count]


@pytest.mark.parametrize("encoding", ["ans", "float32", "float16", "float64"])
def test_every_image_is_written_and_equals_the_senders_local_decode(receiver, encoder, encoding):
    sources = _sources(count=40)
    code = ENCODING_NAMES[encoding]
    report = send_images(receiver.address, sources, encoder, batch_size=16, encodings=[code])
    assert report.ok, report.failed
    assert report.encoding == encoding
    assert len(report.written) == 40
    originals = np.stack([s.load() for s in sources])
    expected = encoder.reconstruct(wire_latents(code, encoder.encode(originals)))
    for source, local in zip(sources, expected, strict=True):
        written = read_image(receiver.out / report.written[source.name], (28, 28))
        np.testing.assert_array_equal(written, local)


def test_default_encoding_is_entropy_coded_and_small(receiver, encoder):
    report = send_images(receiver.address, _sources(count=256), encoder)
    assert report.ok and report.encoding == "ans"
    assert report.payload_bytes / 256 < 32  # float32 would be 4 bytes per latent


def test_first_session_transfers_the_decoder_and_caches_it(receiver, encoder, default_model):
    report = send_images(receiver.address, _sources(count=4), encoder)
    assert report.model_bytes == default_model.decoder.size_bytes
    cached = receiver.models / f"{default_model.decoder.digest}.lln"
    assert cached.read_bytes() == (default_model_dir() / "decoder.lln").read_bytes()


def test_second_session_transfers_no_model_bytes(receiver, encoder):
    send_images(receiver.address, _sources(count=4), encoder)
    second = send_images(receiver.address, _sources(count=4), encoder)
    assert second.ok
    assert second.model_bytes == 0


def test_restarted_receiver_still_has_the_decoder(tmp_path, encoder):
    first = start_receiver(tmp_path / "out", tmp_path / "models")
    assert send_images(first.address, _sources(count=4), encoder).model_bytes > 0
    first.stop()
    second = start_receiver(tmp_path / "out", tmp_path / "models")
    try:
        report = send_images(second.address, _sources(count=4), encoder)
    finally:
        second.stop()
    assert report.ok and report.model_bytes == 0


def test_bad_files_are_reported_per_image_and_good_ones_still_land(receiver, encoder, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ["test_00000.png", "test_00001.png"]:
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "corrupt.png").write_bytes((SAMPLES / "test_00002.png").read_bytes()[:60])
    Image.new("L", (32, 32)).save(folder / "big.png")
    report = send_images(receiver.address, _sources(folder), encoder)
    assert not report.ok
    assert sorted(report.written) == ["test_00000.png", "test_00001.png"]
    assert set(report.failed) == {"corrupt.png", "big.png"}  # notes.txt has no image extension: never listed
    assert "not a readable image" in report.failed["corrupt.png"]
    assert "32x32" in report.failed["big.png"] and "--resize" in report.failed["big.png"]
    # the input bytes come with the reads (the folder is listed without a stat per file): the files read
    read = ["test_00000.png", "test_00001.png"]
    assert report.input_bytes == sum((folder / name).stat().st_size for name in read)
    assert sorted(p.name for p in (receiver.out / report.session_dir).iterdir()) == ["test_00000.png", "test_00001.png"]


def test_dead_target_fails_every_image_with_a_clear_reason(encoder):

    port = free_port()  # nothing listens there
    sources = _sources(count=3)
    report = send_images(f"127.0.0.1:{port}", sources, encoder)
    assert report.failure.status == "UNAVAILABLE" and not report.failure.reached
    assert "cannot reach a receiver" in explain_failure(report.failure, "x", tls=False)
    assert not report.written
    assert set(report.failed) == {s.name for s in sources}


def test_resize_flag_makes_odd_sizes_usable(receiver, encoder, tmp_path):
    Image.open(SAMPLES / "test_00000.png").resize((56, 56)).save(tmp_path / "large.png")
    report = send_images(receiver.address, find_sources(tmp_path / "large.png", (28, 28), resize=True), encoder)
    assert report.ok and report.written == {"large.png": f"{report.session_dir}/large.png"}


def test_npz_array_of_images_is_sent(receiver, encoder, tmp_path):
    pixels = np.stack([read_image(SAMPLES / f"test_0000{i}.png", (28, 28)) for i in range(3)])
    np.savez(tmp_path / "digits.npz", x_test=pixels)
    report = send_images(receiver.address, find_sources(tmp_path / "digits.npz", (28, 28)), encoder)
    assert report.ok
    assert sorted(report.written) == ["digits/x_test_0.png", "digits/x_test_1.png", "digits/x_test_2.png"]


def test_empty_and_missing_folders_are_errors(tmp_path):
    from latentlink.shared.image_io import ImageError

    with pytest.raises(ImageError, match="has no image files"):
        find_sources(tmp_path, (28, 28))
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_sources(tmp_path / "absent", (28, 28))


def test_wrong_target_that_never_answers_times_out_with_a_clear_reason(encoder):
    import socket
    import threading

    with socket.socket() as silent:  # accepts connections, never speaks gRPC
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        threading.Thread(target=lambda: silent.accept(), daemon=True).start()
        sources = _sources(count=2)
        report = send_images(f"127.0.0.1:{silent.getsockname()[1]}", sources, encoder, handshake_timeout=2)
    advice = explain_failure(report.failure, "x", tls=False)
    assert "no handshake" in advice or "cannot reach" in advice
    assert set(report.failed) == {s.name for s in sources}


def _hold_the_only_slot(address: str):
    """Opens another sender's session, taking a receiver's single slot; returns a function that frees it."""
    from latentlink.shared.model_dir import load_model_dir
    from tests.e2e.test_protocol import _hello

    channel = grpc.insecure_channel(address)
    outgoing: queue.Queue = queue.Queue()
    call = latentlink_pb2_grpc.LatentLinkStub(channel).Stream(iter(outgoing.get, None))
    outgoing.put(_hello(load_model_dir(default_model_dir())))
    next(call)  # the handshake: this stream now holds the receiver's only session slot

    def release() -> None:
        outgoing.put(None)
        call.cancel()
        channel.close()

    return release


def test_a_full_receiver_is_waited_for_within_retry_for(tmp_path, encoder):
    running = start_receiver(tmp_path / "out", tmp_path / "models", max_sessions=1)
    release = _hold_the_only_slot(running.address)
    try:
        threading.Timer(1.5, release).start()
        started = time.monotonic()
        report = send_images(running.address, _sources(count=10), encoder, retry_for=20)
        assert report.ok, report.error
        assert time.monotonic() - started >= 1.0 and report.reconnects == 0
    finally:
        running.stop()


def test_a_receiver_that_stays_full_is_a_clear_error(tmp_path, encoder):
    running = start_receiver(tmp_path / "out", tmp_path / "models", max_sessions=1)
    release = _hold_the_only_slot(running.address)
    try:
        report = send_images(running.address, _sources(count=3), encoder, retry_for=1.0)
        assert not report.written and len(report.failed) == 3
        assert report.failure.busy
        assert "kept all its session slots busy" in explain_failure(report.failure, "x", tls=False)
    finally:
        release()
        running.stop()


def test_a_cached_decoder_damaged_on_disk_is_replaced_by_a_new_upload(tmp_path, encoder, default_model):
    """The receiver deletes a cached decoder that fails its digest and asks for it again (defect 10)."""
    running = start_receiver(tmp_path / "out", tmp_path / "models")
    try:
        send_images(running.address, _sources(count=2), encoder)
    finally:
        running.stop()
    cached = tmp_path / "models" / f"{default_model.decoder.digest}.lln"
    damaged = bytearray(cached.read_bytes())
    damaged[1000] ^= 0x01
    cached.write_bytes(bytes(damaged))
    running = start_receiver(tmp_path / "out", tmp_path / "models")  # a restart: nothing in memory
    try:
        report = send_images(running.address, _sources(count=2), encoder)
    finally:
        running.stop()
    assert report.ok and report.model_bytes == default_model.decoder.size_bytes
    assert cached.read_bytes() == (default_model_dir() / "decoder.lln").read_bytes()


def test_the_first_batches_are_read_and_encoded_while_the_handshake_goes_on(receiver, encoder, monkeypatch):
    from latentlink.receiver import servicer

    times: dict[str, float] = {}
    answer = servicer.handshake_to_proto

    def slow_handshake(*args, **kwargs):
        time.sleep(0.5)  # a receiver far away
        times.setdefault("handshake", time.monotonic())
        return answer(*args, **kwargs)

    def timed_load(key: int) -> tuple[np.ndarray, int]:
        times.setdefault("first read", time.monotonic())
        return read_image(SAMPLES / f"test_0000{key}.png", (28, 28)), 100

    monkeypatch.setattr(servicer, "handshake_to_proto", slow_handshake)
    sources = [SourceImage(f"{key}.png", timed_load, key, in_file=True) for key in range(8)]
    report = send_images(receiver.address, sources, encoder, batch_size=4)
    assert report.ok, report.failed
    assert times["first read"] < times["handshake"]


def test_a_crash_while_reading_ends_the_session_with_its_reason(receiver, encoder):
    """Not a broken link: the session is not resumed (it was, until retry_for ran out)."""

    def crashing_load(key: int) -> tuple[np.ndarray, int]:
        if key == 9:
            raise RuntimeError("disk on fire")
        return read_image(SAMPLES / "test_00000.png", (28, 28)), 100

    sources = [SourceImage(f"{key}.png", crashing_load, key, in_file=True) for key in range(12)]
    report = send_images(receiver.address, sources, encoder, batch_size=4, retry_for=3)
    assert report.failure.status == "PROTOCOL" and "disk on fire" in report.failure.details
    assert report.reconnects == 0
    assert len(report.written) == 8 and set(report.failed) == {f"{key}.png" for key in range(8, 12)}
    assert "disk on fire" in report.failed["11.png"]


def test_a_receiver_taking_fewer_images_per_batch_gets_batches_it_takes(receiver, encoder, monkeypatch):
    """A receiver of another make may advertise a smaller batch than the sender reads."""
    from dataclasses import replace

    from latentlink.receiver import servicer

    counts: list[int] = []
    parse = servicer.batch_from_proto

    def counted(batch, *args):
        counts.append(batch.count)
        return parse(batch, *args)

    monkeypatch.setattr(servicer, "LIMITS", replace(servicer.LIMITS, max_batch_images=6))
    monkeypatch.setattr(servicer, "batch_from_proto", counted)
    report = send_images(receiver.address, _sources(count=40), encoder, batch_size=16)
    assert report.ok, report.failed
    assert len(report.written) == 40 and max(counts) == 6 and sum(counts) == 40


def test_a_batch_whose_message_would_pass_the_receivers_limit_goes_in_smaller_batches(receiver, encoder, monkeypatch):
    """Long names (up to 1 KiB each) or wide latents can make a batch too large for one message: it is split."""
    from dataclasses import replace

    from latentlink.receiver import servicer

    sizes: list[tuple[int, int]] = []
    parse = servicer.batch_from_proto

    def measured(batch, *args):
        sizes.append((batch.count, batch.ByteSize()))
        return parse(batch, *args)

    monkeypatch.setattr(servicer, "LIMITS", replace(servicer.LIMITS, max_message_bytes=6000))
    monkeypatch.setattr(servicer, "batch_from_proto", measured)
    hexes = [np.random.default_rng(i).bytes(150).hex() for i in range(40)]  # random: names compress to about half
    sources = [  # 300 hex characters each, in two folders' worth (a part of a path stays under 255 bytes)
        SourceImage(f"{text[:200]}/{text[200:]}.png", source.reader, source.key)
        for text, source in zip(hexes, _sources(count=40), strict=True)
    ]
    report = send_images(receiver.address, sources, encoder, batch_size=32)
    assert report.ok, report.failed
    assert len(report.written) == 40 and sum(count for count, _ in sizes) == 40
    assert len(sizes) > 2 and all(size <= 3000 for _, size in sizes)  # each under half of the advertised limit


def test_an_attempt_with_nothing_left_to_send_still_says_hello_first(receiver, encoder):
    """A resumed attempt may find every image acknowledged: its finish must follow the hello, not race it."""
    report = send_images(receiver.address, [], encoder)
    assert report.failure is None and report.session_dir and report.images == 0


def test_photos_are_read_once_however_often_a_busy_receiver_is_asked(tmp_path, tiny):
    """Digits are read ahead of the handshake; photos, large files, only once a receiver has answered."""
    from latentlink.sender.encode import BatchEncoder

    running = start_receiver(tmp_path / "out", tmp_path / "models", max_sessions=1)
    release = _hold_the_only_slot(running.address)
    reads: list[int] = []

    def photo(key: int) -> tuple[np.ndarray, int]:
        reads.append(key)
        return np.random.default_rng(key).integers(0, 256, (24, 32, 3), np.uint8), 2304

    try:
        threading.Timer(1.5, release).start()  # refused for 1.5 s: several attempts
        sources = [SourceImage(f"{key}.png", photo, key, in_file=True) for key in range(3)]
        report = send_images(running.address, sources, BatchEncoder(tiny, "cpu"), retry_for=20)
        assert report.ok, report.error
    finally:
        running.stop()
    assert sorted(reads) == [0, 1, 2]


@pytest.mark.parametrize("connecting_early", [False, True])
def test_a_receiver_started_with_the_sender_is_waited_for(tmp_path, encoder, connecting_early):
    """`receiver & sender`: the sender may dial before the receiver listens; it waits for it, once. The command's
    channel starts connecting while the inputs are listed: that first try fails too, and is waited past alike."""
    from latentlink.receiver.server import create_server
    from latentlink.sender.channel import open_channel, start_connecting

    port = free_port()
    servers = []
    opened = open_channel(f"127.0.0.1:{port}") if connecting_early else None
    if opened is not None:
        start_connecting(opened)

    def start_late() -> None:
        server, _ = create_server(f"127.0.0.1:{port}", tmp_path / "out", tmp_path / "models", device="cpu")
        server.start()
        servers.append(server)

    threading.Timer(0.5, start_late).start()
    try:
        report = send_images(f"127.0.0.1:{port}", _sources(count=8), encoder, opened=opened)
    finally:
        time.sleep(0.6)  # the timer has fired
        for server in servers:
            server.stop(None).wait()
    assert report.ok, report.error
    assert len(report.written) == 8 and report.reconnects == 0
