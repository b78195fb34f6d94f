"""What a receiver accepts is bounded: decoder work, decoders in memory and on disk; corrupt batches get one resend."""

from __future__ import annotations

import gc
import weakref

import grpc
import numpy as np
import pytest

from latentlink.receiver.model_store import ModelStore
from latentlink.shared.model_format import FORMAT_VERSION, network_to_bytes, parse_network, tensor_from_array
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import model_pb2
from latentlink.shared.protocol import MAX_DECODER_ACTIVATIONS
from latentlink.shared.serde import latents_to_batch
from tests.e2e.test_protocol import _chunks, _decoder_bytes, _hello, _stream


def _upsampler(name: str = "wide") -> bytes:
    """A 90 KB decoder that passes every format check and asks for 512x512x16 activations per image."""

    def transposed(stride: int, size: int, channels_in: int) -> model_pb2.Layer:
        kernel = np.zeros((size, size, 16, channels_in), np.float32)
        return model_pb2.Layer(
            conv2d_transpose=model_pb2.Conv2DTranspose(
                stride=stride,
                padding=model_pb2.PADDING_SAME,
                activation=model_pb2.ACTIVATION_RELU,
                kernel=tensor_from_array(kernel),
                bias=tensor_from_array(np.zeros(16, np.float32)),
            )
        )

    dense = model_pb2.Dense(
        activation=model_pb2.ACTIVATION_LINEAR,
        kernel=tensor_from_array(np.zeros((32, 16), np.float32)),
        bias=tensor_from_array(np.zeros(16, np.float32)),
    )
    network = model_pb2.Network(
        format_version=FORMAT_VERSION,
        role=model_pb2.ROLE_DECODER,
        model_name=name,
        input_shape=[32],
        output_shape=[512, 512, 16],
        layers=[
            model_pb2.Layer(dense=dense),
            model_pb2.Layer(reshape=model_pb2.Reshape(shape=[2, 2, 4])),
            transposed(8, 8, 4),
            transposed(8, 8, 16),
            transposed(4, 4, 16),
        ],
    )
    return network_to_bytes(network)


def test_a_decoder_asking_for_too_much_work_is_refused_before_it_runs(receiver, default_model):
    """Defect 9: bounded activations and multiply-adds per image, advertised in the handshake's limits."""
    data = _upsampler()
    info = parse_network(data)
    assert len(data) < 110_000 and info.activations > 4 * MAX_DECODER_ACTIVATIONS
    hello = _hello(default_model)
    hello.hello.decoder_digest, hello.hello.decoder.size_bytes = info.digest, len(data)
    with pytest.raises(grpc.RpcError) as caught:
        _stream(receiver.address, [hello, *_chunks(data)])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "activations" in caught.value.details() and not list(receiver.models.glob("*.lln"))
    replies = _stream(
        receiver.address, [_hello(default_model), *_chunks(_decoder_bytes()), pb.SenderMessage(finish=pb.Finish())]
    )
    handshake = replies[0].handshake
    assert handshake.limits.max_decoder_activations == MAX_DECODER_ACTIVATIONS


def _variant(name: str):
    """The shipped decoder under another name: another digest, the same network."""
    network = model_pb2.Network.FromString(_decoder_bytes())
    network.model_name = name
    data = network_to_bytes(network)
    return parse_network(data).digest, data


def test_evicted_decoders_are_freed_and_the_disk_cache_is_bounded(tmp_path):
    """Defect 8: least recently used out, in memory (and really freed) and on disk."""
    from latentlink.shared.tf_import import tensorflow

    tensorflow()  # imported first, as the receiver does at start-up
    store = ModelStore(tmp_path, device="cpu", max_loaded=2, max_files=3)
    digests = []
    for i in range(5):
        digest, data = _variant(f"v{i}")
        store.add(digest, data)
        digests.append(digest)
    assert sorted(p.stem for p in tmp_path.glob("*.lln")) == sorted(digests[2:])
    first = weakref.ref(store.decoder(digests[2]))
    store.decoder(digests[3])
    store.decoder(digests[4])  # the third loaded: the first is evicted
    gc.collect()
    assert first() is None, "an evicted decoder stayed in memory"


def test_a_batch_corrupt_on_the_way_is_asked_for_again_once(receiver, default_model):
    """Defect 10: one flipped bit no longer fails a whole batch without a resend."""
    latents = np.zeros((3, default_model.latent_dim))
    digest = default_model.decoder.digest
    good = latents_to_batch(digest, pb.LATENT_ENCODING_FLOAT64, 0, ["a", "b", "c"], (28, 28), latents)
    bad = pb.LatentBatch.FromString(good.SerializeToString())
    bad.values[4] = 1.0  # the checksum no longer matches

    def session(*batches: pb.LatentBatch, upload: bool = False) -> list[pb.AckBatch]:
        messages = [_hello(default_model), *(_chunks(_decoder_bytes()) if upload else [])]
        messages += [pb.SenderMessage(latent_batch=batch) for batch in batches]
        replies = _stream(receiver.address, [*messages, pb.SenderMessage(finish=pb.Finish(images_sent=3))])
        return [m.acks for m in replies if m.WhichOneof("kind") == "acks"]

    first, again = session(bad, good, upload=True)
    assert first.resend and len(first.failures) == 3  # listed as failures too, for a sender that ignores resend
    assert not again.resend and not again.failures
    assert sorted(p.name for p in (receiver.out / "t").iterdir()) == ["a.png", "b.png", "c.png"]
    first, again = session(bad, bad)  # corrupt twice: failed, not asked for forever
    assert first.resend and not again.resend and len(again.failures) == 3
