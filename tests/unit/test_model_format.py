"""The portable model format: exact round trips and rejection of bad files."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.keras_bridge import OneFilterConv2D, keras_from_network, network_from_keras
from latentlink.shared.model_format import (
    MAX_NETWORK_BYTES,
    ModelFormatError,
    digest_of,
    network_to_bytes,
    parse_network,
    tensor_from_array,
)
from latentlink.shared.proto import model_pb2
from latentlink.train.autoencoder import conv_autoencoder, seed_autoencoder

DECODER = model_pb2.ROLE_DECODER


@pytest.fixture(scope="module", params=["seed", "conv"])
def decoder(request):
    import keras

    keras.utils.set_random_seed(1)
    model = seed_autoencoder(16) if request.param == "seed" else conv_autoencoder(16, channels=4)
    return model.decoder


def _bytes(keras_model) -> bytes:
    return network_to_bytes(network_from_keras(keras_model, DECODER, "test"))


def test_round_trip_gives_the_same_outputs(decoder):
    data = _bytes(decoder)
    info = parse_network(data, expected_digest=digest_of(data), role=DECODER)
    loaded = keras_from_network(info)
    latents = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    # Bit for bit, except that a one-filter Conv2D runs as a depthwise convolution (OneFilterConv2D),
    # which sums in another order: float rounding apart, the same function.
    np.testing.assert_allclose(loaded.predict(latents, verbose=0), decoder.predict(latents, verbose=0), atol=1e-6)
    if not any(isinstance(layer, OneFilterConv2D) for layer in loaded.layers):
        np.testing.assert_array_equal(loaded.predict(latents, verbose=0), decoder.predict(latents, verbose=0))


def test_digest_is_stable_across_save_and_reload(decoder):
    data = _bytes(decoder)
    again = _bytes(keras_from_network(parse_network(data)))
    assert again == data
    assert digest_of(again) == digest_of(data)
    assert len(digest_of(data)) == 64


def test_tampered_weights_fail_the_digest_check(decoder):
    data = bytearray(_bytes(decoder))
    digest = digest_of(bytes(data))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ModelFormatError, match="digest mismatch"):
        parse_network(bytes(data), expected_digest=digest)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.99])
def test_truncated_file_is_rejected(decoder, keep):
    data = _bytes(decoder)
    with pytest.raises(ModelFormatError):
        parse_network(data[: int(len(data) * keep)])


def test_oversized_file_is_rejected_before_parsing():
    with pytest.raises(ModelFormatError, match="over the .*-byte limit"):
        parse_network(b"\0" * (MAX_NETWORK_BYTES + 1))


def test_unknown_layer_kind_is_rejected(decoder):
    network = network_from_keras(decoder, DECODER, "test")
    alien = network.layers.add()
    alien.MergeFromString(b"\x9a\x06\x00")  # field 99: a layer kind from the future
    with pytest.raises(ModelFormatError, match="unknown layer kind"):
        parse_network(network_to_bytes(network))


def test_unknown_activation_is_rejected(decoder):
    network = network_from_keras(decoder, DECODER, "test")
    layer = next(layer for layer in network.layers if layer.WhichOneof("kind") == "dense")
    layer.dense.activation = 42
    with pytest.raises(ModelFormatError, match="unknown activation code 42"):
        parse_network(network_to_bytes(network))


def test_kernel_that_does_not_fit_its_input_is_rejected(decoder):
    network = network_from_keras(decoder, DECODER, "test")
    layer = next(layer for layer in network.layers if layer.WhichOneof("kind") == "dense")
    layer.dense.kernel.CopyFrom(tensor_from_array(np.zeros((17, layer.dense.bias.shape[0]), np.float32)))
    with pytest.raises(ModelFormatError, match="does not fit input"):
        parse_network(network_to_bytes(network))


def test_tensor_length_must_match_its_shape(decoder):
    network = network_from_keras(decoder, DECODER, "test")
    network.layers[0].dense.bias.data = network.layers[0].dense.bias.data[:-4]
    with pytest.raises(ModelFormatError, match="data bytes for shape"):
        parse_network(network_to_bytes(network))


def test_declared_output_shape_must_match_the_layers(decoder):
    network = network_from_keras(decoder, DECODER, "test")
    network.output_shape[:] = [32, 32]
    with pytest.raises(ModelFormatError, match="layers produce shape"):
        parse_network(network_to_bytes(network))


def test_encoder_file_is_not_accepted_as_a_decoder():
    encoder = seed_autoencoder(8).encoder
    data = network_to_bytes(network_from_keras(encoder, model_pb2.ROLE_ENCODER, "test"))
    with pytest.raises(ModelFormatError, match="expected a ROLE_DECODER file"):
        parse_network(data, role=DECODER)


def test_unportable_keras_layers_are_refused():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softplus")])
    with pytest.raises(ValueError, match="not portable"):
        network_from_keras(model, DECODER, "test")
