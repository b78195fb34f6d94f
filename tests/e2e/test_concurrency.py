"""Many senders at once on one receiver: identical names, different models, no cross-talk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from latentlink.sender.encode import BatchEncoder
from latentlink.sender.session import send_images
from latentlink.shared.image_io import find_sources, read_image
from latentlink.shared.model_dir import load_model_dir, shipped_model_dir
from latentlink.shared.serde import ENCODING_NAMES
from tests.conftest import SAMPLES
from tests.e2e.conftest import visible

SESSIONS = 16


@pytest.fixture(scope="module")
def float_encoder() -> BatchEncoder:
    return BatchEncoder(load_model_dir(shipped_model_dir("conv-k64")), "cpu")


def test_sixteen_concurrent_sessions_with_the_same_names_land_apart(receiver, encoder, float_encoder):
    sources = find_sources(SAMPLES, (28, 28))[:24]  # every session sends the same 24 names
    plans = [(f"s{i:02d}", float_encoder if i % 4 == 3 else encoder) for i in range(SESSIONS)]

    def run(plan):
        session, codec = plan
        encodings = [ENCODING_NAMES["float32"]] if codec is float_encoder else None
        return send_images(receiver.address, sources, codec, batch_size=8, session=session, encodings=encodings)

    with ThreadPoolExecutor(SESSIONS) as pool:
        reports = list(pool.map(run, plans))
    originals = np.stack([s.load() for s in sources])
    expected = {id(c): c.reconstruct(c.encode(originals)) for c in (encoder, float_encoder)}
    for (session, codec), report in zip(plans, reports, strict=True):
        assert report.ok, (session, report.error, report.failed)
        assert report.session_dir == session
        for source, want in zip(sources, expected[id(codec)], strict=True):
            np.testing.assert_array_equal(read_image(receiver.out / report.written[source.name], (28, 28)), want)
    assert sorted(p.name for p in visible(receiver.out)) == sorted(s for s, _ in plans)


def test_a_session_name_in_use_by_an_open_stream_is_refused(receiver, encoder):
    import threading

    from latentlink.shared.proto import latentlink_pb2_grpc
    from tests.e2e.test_protocol import _hello

    release = threading.Event()

    def hold_open():
        yield _hello(encoder.model)
        release.wait(30)

    with grpc.insecure_channel(receiver.address) as channel:
        first = latentlink_pb2_grpc.LatentLinkStub(channel).Stream(hold_open())
        assert next(first).WhichOneof("kind") == "handshake"  # session "t" is now open
        report = send_images(receiver.address, find_sources(SAMPLES, (28, 28))[:2], encoder, session="t")
        release.set()
        first.cancel()
    assert "ALREADY_EXISTS" in report.error and "pick another" in report.error
    assert not report.written


def test_a_stalled_sender_is_cut_off_and_others_are_unaffected(tmp_path, encoder):
    import threading

    from latentlink.receiver.server import create_server
    from latentlink.shared.proto import latentlink_pb2_grpc
    from tests.e2e.test_protocol import _hello

    server, port = create_server("127.0.0.1:0", tmp_path / "out", tmp_path / "models", "cpu", idle_timeout_s=2.0)
    server.start()
    address, never = f"127.0.0.1:{port}", threading.Event()

    def stall():
        yield _hello(encoder.model)
        never.wait(20)  # says hello, then nothing

    try:
        with grpc.insecure_channel(address) as channel:
            stalled = latentlink_pb2_grpc.LatentLinkStub(channel).Stream(stall())
            with pytest.raises(grpc.RpcError) as failure:
                list(stalled)
        healthy = send_images(address, find_sources(SAMPLES, (28, 28))[:4], encoder)
    finally:
        never.set()
        server.stop(None)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no message from the sender for 2 s" in failure.value.details()
    assert healthy.ok
