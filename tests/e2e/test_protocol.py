"""Hand-built streams against a real receiver: bad versions, tampered models, unsafe names."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from shared.latent_codec import ImageHeader, latents_to_batch
from shared.model_dir import default_model_dir
from shared.proto import latentlink_pb2 as pb
from shared.proto import latentlink_pb2_grpc
from shared.protocol import PROTOCOL_VERSION, channel_options


def _hello(model, version: int = PROTOCOL_VERSION) -> pb.SenderMessage:
    return pb.SenderMessage(
        hello=pb.Hello(
            protocol_version=version,
            decoder_digest=model.decoder.digest,
            decoder=pb.DecoderSummary(
                image_shape=[28, 28],
                latent_dim=model.latent_dim,
                size_bytes=model.decoder.size_bytes,
                model_name=model.name,
            ),
            encodings=[pb.LATENT_ENCODING_FLOAT64],
        )
    )


def _chunks(data: bytes, size: int = 256 * 1024, stop_early: bool = False):
    offsets = list(range(0, len(data), size))
    for offset in offsets[:-1] if stop_early else offsets:
        last = offset == offsets[-1] or (stop_early and offset == offsets[-2])
        yield pb.SenderMessage(model_chunk=pb.ModelChunk(offset=offset, data=data[offset : offset + size], last=last))


def _stream(address: str, messages) -> list[pb.ReceiverMessage]:
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        return list(latentlink_pb2_grpc.LatentLinkStub(channel).Stream(iter(messages), timeout=60))


def _decoder_bytes() -> bytes:
    return (default_model_dir() / "decoder.lln").read_bytes()


def test_protocol_version_mismatch_ends_the_stream_with_both_versions(receiver, default_model):
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model, version=99)])
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sender speaks 99, receiver speaks 1" in failure.value.details()


def test_tampered_model_chunk_is_rejected_and_not_cached(receiver, default_model):
    data = bytearray(_decoder_bytes())
    data[len(data) // 3] ^= 0xFF
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model), *_chunks(bytes(data))])
    assert failure.value.code() == grpc.StatusCode.DATA_LOSS
    assert "digest mismatch" in failure.value.details()
    assert not list(receiver.models.glob("*.lln"))


def test_truncated_model_transfer_is_rejected(receiver, default_model):
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model), *_chunks(_decoder_bytes(), size=4096, stop_early=True)])
    assert failure.value.code() == grpc.StatusCode.DATA_LOSS
    assert "truncated" in failure.value.details()


def test_oversized_model_announcement_is_refused(receiver, default_model):
    hello = _hello(default_model)
    hello.hello.decoder.size_bytes = 1 << 40
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [hello])
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_oversized_message_is_refused_by_the_transport(receiver, default_model):
    huge = pb.SenderMessage(model_chunk=pb.ModelChunk(offset=0, data=b"\0" * (5 * 1024 * 1024)))
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model), huge])
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unsafe_names_fail_per_image_and_nothing_escapes(receiver, default_model, tmp_path):
    names = ["../escape.png", "/etc/passwd", "a/../../b.png", ".hidden.png", "ok/fine.png", "ok/fine.png"]
    headers = [ImageHeader(seq=i, name=n, shape=(28, 28)) for i, n in enumerate(names)]
    batch = latents_to_batch(default_model.decoder.digest, headers, np.zeros((len(names), default_model.latent_dim)))
    replies = _stream(
        receiver.address,
        [
            _hello(default_model),
            *_chunks(_decoder_bytes()),
            pb.SenderMessage(latent_batch=batch),
            pb.SenderMessage(finish=pb.Finish(images_sent=len(names))),
        ],
    )
    acks = [ack for r in replies if r.WhichOneof("kind") == "acks" for ack in r.acks.acks]
    status = {ack.seq: ack.status for ack in acks}
    assert [status[i] for i in range(len(names))] == [pb.ACK_STATUS_FAILED] * 4 + [
        pb.ACK_STATUS_WRITTEN,
        pb.ACK_STATUS_FAILED,
    ]
    written = [p.relative_to(receiver.out).as_posix() for p in receiver.out.rglob("*") if p.is_file()]
    assert written == ["ok/fine.png"]
    assert not (tmp_path / "escape.png").exists()
    assert replies[-1].summary.images_written == 1 and replies[-1].summary.images_failed == 5


def test_latents_of_the_wrong_width_are_refused(receiver, default_model):
    headers = [ImageHeader(seq=0, name="x.png", shape=(28, 28))]
    batch = latents_to_batch(default_model.decoder.digest, headers, np.zeros((1, default_model.latent_dim + 1)))
    with pytest.raises(grpc.RpcError) as failure:
        _stream(
            receiver.address,
            [_hello(default_model), *_chunks(_decoder_bytes()), pb.SenderMessage(latent_batch=batch)],
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decoder expects" in failure.value.details()


def test_batch_for_an_unknown_decoder_digest_is_refused(receiver, default_model):
    headers = [ImageHeader(seq=0, name="x.png", shape=(28, 28))]
    batch = latents_to_batch("f" * 64, headers, np.zeros((1, default_model.latent_dim)))
    with pytest.raises(grpc.RpcError) as failure:
        _stream(
            receiver.address,
            [_hello(default_model), *_chunks(_decoder_bytes()), pb.SenderMessage(latent_batch=batch)],
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session uses" in failure.value.details()
