"""Hand-built streams against a real receiver: bad versions, tampered models, unsafe names."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from latentlink.shared.model_dir import default_model_dir
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import latentlink_pb2_grpc
from latentlink.shared.protocol import PROTOCOL_VERSION, channel_options
from latentlink.shared.serde import latents_to_batch
from tests.e2e.conftest import visible, visible_files

SESSION = "t"


def _hello(model, version: int = PROTOCOL_VERSION, encoding: int = pb.LATENT_ENCODING_FLOAT64) -> pb.SenderMessage:
    return pb.SenderMessage(
        hello=pb.Hello(
            protocol_version=version,
            decoder_digest=model.decoder.digest,
            decoder=pb.DecoderSummary(
                image_shape=[28, 28],
                latent_dim=model.latent_dim,
                size_bytes=model.decoder.size_bytes,
                model_name=model.name,
                has_entropy_model=model.decoder.network.HasField("entropy_model"),
            ),
            encodings=[encoding],
            session=SESSION,
        )
    )


def _chunks(data: bytes, size: int = 256 * 1024, stop_early: bool = False):
    offsets = list(range(0, len(data), size))
    for offset in offsets[:-1] if stop_early else offsets:
        last = offset == offsets[-1] or (stop_early and offset == offsets[-2])
        yield pb.SenderMessage(model_chunk=pb.ModelChunk(offset=offset, data=data[offset : offset + size], last=last))


def _batch(model, names, width: int | None = None, digest: str | None = None, values=None) -> pb.LatentBatch:
    latents = np.zeros((len(names), width or model.latent_dim)) if values is None else values
    return latents_to_batch(digest or model.decoder.digest, pb.LATENT_ENCODING_FLOAT64, 0, names, (28, 28), latents)


def _stream(address: str, messages) -> list[pb.ReceiverMessage]:
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        return list(latentlink_pb2_grpc.LatentLinkStub(channel).Stream(iter(messages), timeout=60))


def _decoder_bytes() -> bytes:
    return (default_model_dir() / "decoder.lln").read_bytes()


@pytest.mark.parametrize("version", [1, 99])  # 1: a sender from before images of any size
def test_protocol_version_mismatch_ends_the_stream_with_both_versions(receiver, default_model, version):
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model, version=version)])
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"sender speaks {version}, receiver speaks 2" in failure.value.details()


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


@pytest.mark.parametrize(("advertised", "count"), [(None, 4097), (6, 7)])
def test_a_batch_over_the_images_the_handshake_allowed_is_refused(
    receiver, default_model, monkeypatch, advertised, count
):
    """Digits may come 4,096 to a batch (28 x 28: well within the pixels a batch may hold); past what the handshake
    said, a batch is refused, whatever this receiver's limits are."""
    from dataclasses import replace

    from latentlink.receiver import servicer

    if advertised is not None:
        monkeypatch.setattr(servicer, "LIMITS", replace(servicer.LIMITS, max_batch_images=advertised))
    names = [f"{i:05d}.png" for i in range(count)]
    messages = [
        _hello(default_model),
        *_chunks(_decoder_bytes()),
        pb.SenderMessage(latent_batch=_batch(default_model, names)),
    ]
    replies = []
    with pytest.raises(grpc.RpcError) as failure:
        with grpc.insecure_channel(receiver.address, options=channel_options()) as channel:
            replies.extend(latentlink_pb2_grpc.LatentLinkStub(channel).Stream(iter(messages), timeout=60))
    assert replies[0].handshake.limits.max_batch_images == (advertised or 4096)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"batch of {count} images (1..{count - 1})" in failure.value.details()


def test_unsafe_names_fail_per_image_and_nothing_escapes(receiver, default_model, tmp_path):
    names = ["../escape.png", "/etc/passwd", "a/../../b.png", ".hidden.png", "ok/fine.png", "ok/fine.png"]
    batch = _batch(default_model, names)
    replies = _stream(
        receiver.address,
        [
            _hello(default_model),
            *_chunks(_decoder_bytes()),
            pb.SenderMessage(latent_batch=batch),
            pb.SenderMessage(finish=pb.Finish(images_sent=len(names))),
        ],
    )
    acks = next(r.acks for r in replies if r.WhichOneof("kind") == "acks")
    assert (acks.first_seq, acks.count) == (0, len(names))
    assert sorted(f.seq for f in acks.failures) == [0, 1, 2, 3, 5]
    written = visible_files(receiver.out)
    assert written == ["t/ok/fine.png"]
    assert not (tmp_path / "escape.png").exists()
    assert replies[-1].summary.images_written == 1 and replies[-1].summary.images_failed == 5


def _acks_for(receiver, model, batch: pb.LatentBatch, encoding=pb.LATENT_ENCODING_FLOAT64) -> pb.AckBatch:
    replies = _stream(
        receiver.address,
        [
            _hello(model, encoding=encoding),
            *_chunks(_decoder_bytes()),
            pb.SenderMessage(latent_batch=batch),
            pb.SenderMessage(finish=pb.Finish(images_sent=batch.count)),
        ],
    )
    return next(r.acks for r in replies if r.WhichOneof("kind") == "acks")


def test_latents_of_the_wrong_width_fail_every_image_of_the_batch(receiver, default_model):
    acks = _acks_for(
        receiver, default_model, _batch(default_model, ["x.png", "y.png"], width=default_model.latent_dim + 1)
    )
    assert [f.seq for f in acks.failures] == [0, 1]
    assert "decoder expects" in acks.failures[0].error
    assert not visible(receiver.out)


def test_non_finite_latents_fail_per_image(receiver, default_model):
    values = np.zeros((3, default_model.latent_dim))
    values[1, 5] = np.nan
    values[2, 0] = np.inf
    acks = _acks_for(receiver, default_model, _batch(default_model, ["a.png", "b.png", "c.png"], values=values))
    assert [f.seq for f in acks.failures] == [1, 2]
    assert "non-finite" in acks.failures[0].error
    assert sorted(p.name for p in (receiver.out / SESSION).iterdir()) == ["a.png"]


def test_corrupt_bitstream_fails_its_images_and_writes_nothing(receiver, default_model, encoder):
    from latentlink.shared.image_io import find_sources
    from tests.conftest import SAMPLES

    pixels = np.stack([s.load() for s in find_sources(SAMPLES, (28, 28))[:8]])
    batch = latents_to_batch(
        default_model.decoder.digest,
        pb.LATENT_ENCODING_ANS,
        0,
        [f"{i}.png" for i in range(8)],
        (28, 28),
        encoder.encode(pixels),
        encoder.tables,
    )
    payload = bytearray(batch.payload)
    payload[len(payload) // 2] ^= 0x5A
    batch.payload = bytes(payload)
    acks = _acks_for(receiver, default_model, batch, encoding=pb.LATENT_ENCODING_ANS)
    assert len(acks.failures) == 8 and "corrupt" in acks.failures[0].error
    assert not visible(receiver.out)


def test_batch_for_an_unknown_decoder_digest_is_refused(receiver, default_model):
    batch = _batch(default_model, ["x.png"], digest="f" * 64)
    with pytest.raises(grpc.RpcError) as failure:
        _stream(
            receiver.address,
            [_hello(default_model), *_chunks(_decoder_bytes()), pb.SenderMessage(latent_batch=batch)],
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "session uses" in failure.value.details()


def test_ans_is_refused_for_a_decoder_without_an_entropy_model(receiver):
    from latentlink.shared.model_dir import load_model_dir, shipped_model_dir

    plain = load_model_dir(shipped_model_dir("conv-k64"))
    hello = _hello(plain, encoding=pb.LATENT_ENCODING_ANS)
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [hello])
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no latent encoding in common" in failure.value.details()


def test_latents_before_the_hello_end_the_stream(receiver, default_model):
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [pb.SenderMessage(latent_batch=_batch(default_model, ["x.png"]))])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'expected "hello"' in failure.value.details()


def test_second_hello_ends_the_stream(receiver, default_model):
    messages = [_hello(default_model), *_chunks(_decoder_bytes()), _hello(default_model)]
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, messages)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'unexpected "hello"' in failure.value.details()


def test_model_chunk_out_of_order_ends_the_stream(receiver, default_model):
    chunks = list(_chunks(_decoder_bytes(), size=4096))
    with pytest.raises(grpc.RpcError) as failure:
        _stream(receiver.address, [_hello(default_model), chunks[1], chunks[0]])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 0" in failure.value.details()


def test_session_names_that_are_not_one_safe_component_are_refused(receiver, default_model):
    for bad in ["", "../up", "a/b", ".hidden", "x" * 65]:
        hello = _hello(default_model)
        hello.hello.session = bad
        with pytest.raises(grpc.RpcError) as failure:
            _stream(receiver.address, [hello])
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session name" in failure.value.details()
