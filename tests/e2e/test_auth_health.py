"""Token authentication and the standard health service on a real receiver (a full disk included)."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from latentlink.receiver.server import SERVICE_NAME
from latentlink.sender.cli import explain_failure
from latentlink.sender.session import send_images
from latentlink.shared.auth import read_token
from latentlink.shared.image_io import find_sources
from tests.conftest import SAMPLES
from tests.e2e.conftest import start_receiver, visible

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def guarded(tmp_path):
    running = start_receiver(tmp_path / "out", tmp_path / "models", token=TOKEN)
    yield running
    running.stop()


def _sources():
    return find_sources(SAMPLES, (28, 28))[:3]


def test_right_token_is_let_in(guarded, encoder):
    report = send_images(guarded.address, _sources(), encoder, token=TOKEN)
    assert report.ok


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
def test_missing_or_wrong_token_is_refused_and_nothing_is_written(guarded, encoder, token):
    report = send_images(guarded.address, _sources(), encoder, token=token)
    assert report.failure.status == "UNAUTHENTICATED"
    assert "refused the token" in explain_failure(report.failure, guarded.address, tls=False)
    assert not report.written and len(report.failed) == 3
    assert not visible(guarded.out)


@pytest.mark.parametrize("service", ["", SERVICE_NAME])
def test_health_service_answers_serving_without_a_token(guarded, service):
    with grpc.insecure_channel(guarded.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_a_receiver_whose_disk_is_full_says_not_serving_until_it_has_room(tmp_path, encoder):
    """Its own rule of what is full (more free bytes than any disk has): every image is still written or reported,
    and health says NOT_SERVING, so that probes and load balancers send new sessions elsewhere."""
    running = start_receiver(tmp_path / "out", tmp_path / "models", min_free_bytes=1 << 62)
    try:
        assert _health(running.address) == health_pb2.HealthCheckResponse.SERVING  # nothing written yet
        report = send_images(running.address, _sources(), encoder)
        assert report.ok and len(report.written) == 3  # the disk is not really full
        assert _health(running.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        running.stop()


def test_a_disk_with_room_again_turns_the_receiver_serving_again(tmp_path):
    from latentlink.receiver.disk_space import DiskSpace

    statuses = []
    disk = DiskSpace(tmp_path, statuses.append, min_free=1 << 62, recheck_s=0.01)
    disk.check()
    disk.check()  # one watcher at a time
    assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
    disk.min_free = 1  # room again
    for _ in range(500):
        if len(statuses) == 2:
            break
        time.sleep(0.01)
    assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING]


def test_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LATENTLINK_TOKEN", raising=False)
    assert read_token(None) is None
    monkeypatch.setenv("LATENTLINK_TOKEN", "from-env")
    assert read_token(None) == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert read_token(tmp_path / "token") == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token(tmp_path / "empty")


def test_reflection_lists_the_latentlink_service(guarded):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(guarded.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(stub.ServerReflectionInfo(iter([request]), metadata=[("authorization", f"Bearer {TOKEN}")]))
    names = {service.name for service in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
