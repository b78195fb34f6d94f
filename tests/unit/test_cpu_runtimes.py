"""Both CPU runtimes compute what TensorFlow computes: every layer kind the format allows (numpy) or LiteRT expresses,
and the shipped MNIST models on the test set."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.keras_bridge import GDN, network_from_keras
from latentlink.shared.litert_runtime import LiteNetwork
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import network_to_bytes, parse_network
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.shared.numpy_runtime import NumpyNetwork
from latentlink.shared.proto import model_pb2
from latentlink.shared.tf_import import tensorflow
from tests.conftest import MODELS

tensorflow()
import keras  # noqa: E402

L = keras.layers
RUNTIMES = {"numpy": NumpyNetwork, "litert": LiteNetwork}
NOT_IN_LITERT = "gdn and affine"  # the photo models' layers: numpy runs them


def _gdn(inverse: bool) -> GDN:
    return GDN(inverse=inverse)


# Each case: input shape, then layers; odd sizes so that SAME padding is uneven and strides do not divide.
CASES = {
    "dense activations": ((13,), [L.Dense(9, activation=a) for a in ("relu", "sigmoid", "tanh", "leaky_relu")]),
    "conv same strides": ((11, 7, 3), [L.Conv2D(5, 3, 2, "same", activation="relu"), L.Conv2D(4, 5, 3, "same")]),
    "conv valid": ((12, 9, 2), [L.Conv2D(6, (3, 2), 2, "valid", activation="tanh"), L.Conv2D(1, 2, 1, "valid")]),
    "conv few outputs (scatter)": ((9, 10, 16), [L.Conv2D(1, 3, 1, "same", activation="sigmoid")]),
    "conv few outputs strided": ((11, 10, 40), [L.Conv2D(2, 3, 2, "same", activation="relu")]),
    "conv few outputs valid": ((12, 9, 20), [L.Conv2D(1, (3, 2), 3, "valid", activation="tanh")]),
    "transpose same": (
        (5, 3, 4),
        [L.Conv2DTranspose(6, 3, 2, "same", activation="relu"), L.Conv2DTranspose(2, 5, 2, "same")],
    ),
    "transpose valid": ((4, 6, 3), [L.Conv2DTranspose(5, 3, 2, "valid"), L.Conv2DTranspose(2, (2, 4), 3, "valid")]),
    "transpose stride over kernel": ((3, 5, 2), [L.Conv2DTranspose(3, 2, 3, "same", activation="leaky_relu")]),
    "transpose few outputs": ((5, 6, 16), [L.Conv2DTranspose(3, 5, 2, "same", activation="sigmoid")]),
    "transpose few outputs valid": ((4, 7, 12), [L.Conv2DTranspose(2, (3, 4), 3, "valid", activation="relu")]),
    "transpose few outputs stride over kernel": ((6, 3, 8), [L.Conv2DTranspose(1, 2, 3, "same")]),
    "gdn and affine": ((6, 5, 3), [L.Rescaling(2.0, offset=-1.0), L.Conv2D(4, 3, 1, "same"), _gdn(False), _gdn(True)]),
    "reshape and flatten": ((24,), [L.Reshape((2, 4, 3)), L.Conv2D(2, 3, 1, "same"), L.Flatten(), L.Dense(3)]),
}


def _network(shape, layers, seed: int):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape), *layers])
    for layer in model.layers:  # GDN starts as the identity; make it do something, within its constraints
        if isinstance(layer, GDN):
            channels = layer.beta.shape[0]
            layer.set_weights(
                [
                    np.full(channels, 0.5, np.float32),
                    np.random.default_rng(seed).random((channels, channels), np.float32),
                ]
            )
    info = parse_network(network_to_bytes(network_from_keras(model, model_pb2.ROLE_DECODER, "case")))
    return info


@pytest.mark.parametrize(
    ("runtime", "case"), [(r, c) for r in RUNTIMES for c in CASES if not (r == "litert" and c == NOT_IN_LITERT)]
)
def test_every_layer_kind_matches_tensorflow(runtime, case):
    shape, layers = CASES[case]
    info = _network(shape, layers, seed=len(case))
    batch = np.random.default_rng(1).normal(0, 1, (7, *shape)).astype(np.float32)
    expected = CompiledNetwork(info, "cpu")(batch)
    got = RUNTIMES[runtime](info)(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("name", ["q4", "q1", "seed-k64"])
def test_shipped_mnist_models_agree_with_tensorflow_on_the_test_set(runtime, name, mnist):
    """Latents identical after rounding (but on rounding boundaries); pixels within 1, identical on >= 99.9%."""
    model = load_model_dir(MODELS / name)
    _, x_test = mnist
    images = (x_test[:2000].astype(np.float32) / 255.0).reshape(-1, *model.encoder.input_shape)
    ours, theirs = RUNTIMES[runtime](model.encoder)(images), CompiledNetwork(model.encoder, "cpu")(images)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    differ = np.round(ours) != np.round(theirs)
    assert np.all(np.abs(np.abs(theirs[differ] % 1.0) - 0.5) < 1e-3)  # only where a value sits on a boundary
    latents = np.round(theirs) if model.decoder.network.HasField("entropy_model") else theirs
    pixels = to_uint8(RUNTIMES[runtime](model.decoder)(latents))
    reference = to_uint8(CompiledNetwork(model.decoder, "cpu")(latents))
    difference = np.abs(pixels.astype(int) - reference)
    assert difference.max() <= 1 and np.mean(difference == 0) >= 0.999
