"""Peers that behave differently from our sender, against a real receiver: each must get what it is owed."""

from __future__ import annotations

import queue

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import latentlink_pb2_grpc
from latentlink.shared.protocol import channel_options
from latentlink.shared.serde import latents_to_batch
from tests.e2e.test_protocol import _chunks, _decoder_bytes, _hello


class _Peer:
    """A client that writes one message at a time and reads the receiver's answers when it chooses."""

    def __init__(self, address: str, timeout_s: float = 20.0) -> None:
        self.channel = grpc.insecure_channel(address, options=channel_options())
        self.outgoing: queue.SimpleQueue = queue.SimpleQueue()
        requests = iter(self.outgoing.get, None)
        self.call = latentlink_pb2_grpc.LatentLinkStub(self.channel).Stream(requests, timeout=timeout_s)

    def send(self, message: pb.SenderMessage) -> None:
        self.outgoing.put(message)

    def receive(self, kind: str) -> pb.ReceiverMessage:
        message = next(self.call)
        assert message.WhichOneof("kind") == kind, message
        return message

    def close(self) -> None:
        self.outgoing.put(None)
        self.channel.close()


def test_a_stop_and_wait_client_gets_each_ack_before_it_sends_more(receiver, default_model):
    """Each batch is acknowledged once durable, without waiting for the next message (defect 1)."""
    peer = _Peer(receiver.address, timeout_s=20.0)  # the receiver's idle timeout is 120 s: only an ack ends a wait
    try:
        peer.send(_hello(default_model))
        assert not peer.receive("handshake").handshake.has_decoder
        for chunk in _chunks(_decoder_bytes()):
            peer.send(chunk)
        peer.receive("model_accepted")
        for first in (0, 3, 6):
            names = [f"img{first + i}.png" for i in range(3)]
            latents = np.zeros((3, default_model.latent_dim))
            batch = latents_to_batch(
                default_model.decoder.digest, pb.LATENT_ENCODING_FLOAT64, first, names, (28, 28), latents
            )
            peer.send(pb.SenderMessage(latent_batch=batch))
            acks = peer.receive("acks").acks  # DEADLINE_EXCEEDED here if the ack waited for our next message
            assert (acks.first_seq, acks.count, list(acks.failures)) == (first, 3, [])
            assert all((receiver.out / "t" / name).is_file() for name in names)
        peer.send(pb.SenderMessage(finish=pb.Finish(images_sent=9)))
        assert peer.receive("summary").summary.images_written == 9
    finally:
        peer.close()


def _hello_from(model, sender_id: str) -> pb.SenderMessage:
    hello = _hello(model)
    hello.hello.sender_id = sender_id
    return hello


def test_the_same_senders_reconnect_takes_over_its_abandoned_stream(receiver, default_model):
    """An abandoned stream no longer locks its session out (defect 3); another sender still cannot take it."""
    first = _Peer(receiver.address)
    try:
        first.send(_hello_from(default_model, "sender-one-aaaaaaaaaa"))
        first.receive("handshake")  # ... and then this sender loses track of the call without closing it
        stranger = _Peer(receiver.address)
        stranger.send(_hello_from(default_model, "sender-two-bbbbbbbbbb"))
        try:
            stranger.receive("handshake")
            raise AssertionError("another sender took an open session")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
        finally:
            stranger.close()
        again = _Peer(receiver.address)
        again.send(_hello_from(default_model, "sender-one-aaaaaaaaaa"))
        assert again.receive("handshake").handshake.session_dir == "t"
        try:
            next(first.call)
            raise AssertionError("the abandoned stream lives on")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.ABORTED and "newer stream" in exc.details()
        again.close()
    finally:
        first.close()


def test_a_sender_that_cannot_parse_an_ack_resumes_and_reports_every_image_written(receiver, encoder, monkeypatch):
    """The broken call is cancelled and the session resumed: nothing on disk is reported failed (defects 3, 4)."""
    from latentlink.sender.session import send_images
    from latentlink.shared.image_io import find_sources
    from tests.conftest import SAMPLES

    parse, broken = pb.ReceiverMessage.FromString, []

    def parse_badly_once(data: bytes) -> pb.ReceiverMessage:
        message = parse(data)
        if message.WhichOneof("kind") == "acks" and not broken:
            broken.append(message)
            raise DecodeError("garbled on the way")  # gRPC reports INTERNAL to the caller
        return message

    monkeypatch.setattr(pb.ReceiverMessage, "FromString", staticmethod(parse_badly_once))
    sources = find_sources(SAMPLES, (28, 28))[:64]
    report = send_images(receiver.address, sources, encoder, batch_size=16, retry_for=20, session="garbled")
    assert broken and report.reconnects >= 1
    assert report.ok, (report.error, list(report.failed.items())[:3])
    assert sorted(report.written) == sorted(s.name for s in sources)


def _session_with_batch(receiver, default_model, batch: pb.LatentBatch) -> list[pb.ReceiverMessage]:
    from tests.e2e.test_protocol import _stream

    return _stream(
        receiver.address,
        [
            _hello(default_model),
            *_chunks(_decoder_bytes()),
            pb.SenderMessage(latent_batch=batch),
            pb.SenderMessage(finish=pb.Finish(images_sent=batch.count)),
        ],
    )


def test_sequence_numbers_past_the_limit_are_invalid_argument(receiver, default_model):
    """A range near 2**64 is refused up front, not an UNKNOWN crash building a failure (defect 7)."""
    latents = np.full((2, default_model.latent_dim), np.nan)  # failing images: the receiver builds ImageFailures
    batch = latents_to_batch(
        default_model.decoder.digest, pb.LATENT_ENCODING_FLOAT64, 2**64 - 2, ["a.png", "b.png"], (28, 28), latents
    )
    try:
        _session_with_batch(receiver, default_model, batch)
        raise AssertionError("accepted")
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "sequence numbers" in exc.details()


def test_drive_letter_names_are_refused(receiver, default_model):
    """The name is checked before the session folder is prefixed (defect 10)."""
    latents = np.zeros((2, default_model.latent_dim))
    batch = latents_to_batch(
        default_model.decoder.digest, pb.LATENT_ENCODING_FLOAT64, 0, ["C:/x.png", "ok.png"], (28, 28), latents
    )
    acks = [m.acks for m in _session_with_batch(receiver, default_model, batch) if m.WhichOneof("kind") == "acks"]
    assert [(f.seq, f.error) for f in acks[0].failures] == [(0, 'image name "C:/x.png" starts with a drive letter')]
    assert sorted(p.name for p in (receiver.out / "t").iterdir()) == ["ok.png"]


def test_peer_text_cannot_forge_log_lines(receiver, default_model, caplog):
    """A newline in the model name is escaped before it is logged (defect 10)."""
    import logging

    from tests.e2e.test_protocol import _stream

    hello = _hello(default_model)
    hello.hello.decoder.model_name = "rd-q4\n2026-01-01 receiver INFO all images written"
    with caplog.at_level(logging.INFO, logger="latentlink.receiver"):
        _stream(receiver.address, [hello, *_chunks(_decoder_bytes()), pb.SenderMessage(finish=pb.Finish())])
    messages = [record.getMessage() for record in caplog.records]
    assert any("rd-q4\\n2026-01-01" in message for message in messages)
    assert not any("\n" in message for message in messages)
