"""The numpy runtime computes what the TensorFlow runtime computes, for every layer kind the format allows."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.keras_bridge import GDN, network_from_keras
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import network_to_bytes, parse_network
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
from latentlink.shared.proto import model_pb2
from latentlink.shared.tf_import import tensorflow
from tests.conftest import MODELS

tensorflow()
import keras  # noqa: E402

L = keras.layers


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


@pytest.mark.parametrize("case", list(CASES))
def test_every_layer_kind_matches_tensorflow(case):
    shape, layers = CASES[case]
    info = _network(shape, layers, seed=len(case))
    batch = np.random.default_rng(1).normal(0, 1, (7, *shape)).astype(np.float32)
    expected = CompiledNetwork(info, "cpu")(batch)
    got = NumpyNetwork(info)(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_an_image_gives_the_same_floats_in_any_batch_and_any_slice():
    """A resumed session batches differently; its pixels must not change."""
    info = _network((8, 8, 3), [L.Conv2D(64, 3, 1, "same", activation="relu"), L.Flatten(), L.Dense(5)], seed=3)
    network = NumpyNetwork(info)
    batch = np.random.default_rng(2).random((2500, 8, 8, 3), np.float32)  # ~37 M patch elements: several slices
    whole = network(batch)
    for size in (1, 5, 37, 300):
        np.testing.assert_array_equal(
            np.concatenate([network(batch[i : min(i + size, 600)]) for i in range(0, 600, size)]), whole[:600]
        )
    np.testing.assert_array_equal(network(batch), whole)


@pytest.mark.parametrize("name", ["q4", "seed-k64"])
def test_shipped_decoders_give_the_same_floats_in_any_batch(name):
    network = NumpyNetwork(load_model_dir(MODELS / name).decoder)
    latents = np.round(np.random.default_rng(0).normal(size=(300, network.info.input_shape[0])) * 3).astype(np.float32)
    whole = network(latents)
    for size in (1, 7, 64, 100):
        np.testing.assert_array_equal(
            np.concatenate([network(latents[i : i + size]) for i in range(0, 300, size)]), whole
        )


def test_warming_up_builds_every_layout_and_changes_no_float():
    """The receiver warms its decoder up while the handshake travels: the first batch then builds nothing."""
    decoder = load_model_dir(MODELS / "q4").decoder
    latents = np.round(np.random.default_rng(1).normal(size=(100, decoder.input_shape[0])) * 3).astype(np.float32)
    cold, warmed = NumpyNetwork(decoder), NumpyNetwork(decoder)
    warmed.warm_up()
    convolutions = [layer for layer in warmed.layers if hasattr(layer, "_layouts")]
    assert convolutions and all(len(layer._layouts._layouts) == 1 for layer in convolutions)
    assert warmed._largest
    np.testing.assert_array_equal(warmed(latents), cold(latents))


@pytest.mark.parametrize("name", ["q4", "seed-k64"])
def test_a_batch_cut_over_threads_gives_the_same_floats(name):
    model = load_model_dir(MODELS / name)
    encoder, decoder = NumpyNetwork(model.encoder), NumpyNetwork(model.decoder)
    images = np.random.default_rng(1).random((3 * 64 + 5, *encoder.input_shape), np.float32)
    latents = np.round(np.random.default_rng(0).normal(size=(700, decoder.input_shape[0])) * 3).astype(np.float32)
    alone = encoder(images), decoder(latents)
    try:
        for threads in (2, 3, 8):
            set_threads(threads)
            np.testing.assert_array_equal(encoder(images), alone[0])
            np.testing.assert_array_equal(decoder(latents), alone[1])
            np.testing.assert_array_equal(decoder(latents[:65]), alone[1][:65])
            # finished a slice at a time on each thread (q4: slices of 64 images), as the receiver rounds pixels
            np.testing.assert_array_equal(decoder(latents, finish=to_uint8), to_uint8(alone[1]))
    finally:
        set_threads(1)
    np.testing.assert_array_equal(decoder(latents, finish=to_uint8), to_uint8(alone[1]))


def test_a_photo_cut_into_bands_over_threads_gives_the_same_floats():
    model = load_model_dir(MODELS / "photo-q1")
    encoder, decoder = NumpyNetwork(model.encoder), NumpyNetwork(model.decoder)
    image = np.random.default_rng(2).random((1, 320, 448, 3), np.float32)
    alone = encoder(image)
    decoded = decoder(np.round(alone))
    try:
        set_threads(2)
        np.testing.assert_array_equal(encoder(image), alone)
        np.testing.assert_array_equal(decoder(np.round(alone)), decoded)
    finally:
        set_threads(1)


@pytest.mark.parametrize(("size", "stride", "most"), [(3, 2, 9 / 16), (5, 2, 7 / 9), (2, 3, 4 / 9)])
def test_a_transposed_convolution_multiplies_only_the_taps_each_phase_reads(size, stride, most):
    """Its phases read different taps of the window (a 3x3 kernel at stride 2: 4, 2, 2 and 1 of 4): multiplying
    the zero taps too costs 16/9 of the work. The layer's floats are checked against TensorFlow above."""
    info = _network((6, 5, 8), [L.Conv2DTranspose(4, size, stride, "same")], seed=size)
    (layer,) = NumpyNetwork(info).layers
    product = layer.product
    multiplied = sum((hi - lo) * (last - first) for lo, hi, first, last, _ in product.blocks)
    assert multiplied <= most * product.inputs * product.outputs + 1e-9


def test_a_batch_of_the_wrong_shape_is_refused():
    info = _network((13,), [L.Dense(2)], seed=0)
    with pytest.raises(ValueError, match="does not match"):
        NumpyNetwork(info)(np.zeros((2, 12), np.float32))


@pytest.mark.parametrize("name", ["q4", "q1", "seed-k64"])
def test_shipped_mnist_models_agree_with_tensorflow_on_the_test_set(name, mnist):
    """Latents identical after rounding (but on rounding boundaries); pixels within 1, identical on >= 99.9%."""
    model = load_model_dir(MODELS / name)
    _, x_test = mnist
    images = (x_test[:2000].astype(np.float32) / 255.0).reshape(-1, *model.encoder.input_shape)
    ours, theirs = NumpyNetwork(model.encoder)(images), CompiledNetwork(model.encoder, "cpu")(images)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    differ = np.round(ours) != np.round(theirs)
    assert np.all(np.abs(np.abs(theirs[differ] % 1.0) - 0.5) < 1e-3)  # only where a value sits on a boundary
    latents = np.round(theirs) if model.decoder.network.HasField("entropy_model") else theirs
    pixels = to_uint8(NumpyNetwork(model.decoder)(latents))
    reference = to_uint8(CompiledNetwork(model.decoder, "cpu")(latents))
    difference = np.abs(pixels.astype(int) - reference)
    assert difference.max() <= 1 and np.mean(difference == 0) >= 0.999


def test_a_photo_model_codes_an_odd_sized_image_like_tensorflow():
    """517 x 333: large enough that every big convolution runs in bands of outputs."""
    model = load_model_dir(MODELS / "photo-q1")
    image = np.random.default_rng(4).random((1, 517, 333, 3), np.float32)
    latents = np.round(CompiledNetwork(model.encoder, "cpu")(image))
    ours = NumpyNetwork(model.decoder)(latents)
    np.testing.assert_allclose(ours, CompiledNetwork(model.decoder, "cpu")(latents), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(
        NumpyNetwork(model.encoder)(image), CompiledNetwork(model.encoder, "cpu")(image), rtol=1e-3, atol=1e-3
    )


def test_layouts_are_kept_for_a_few_sizes_only():
    """Photos come in every size: a long-running receiver must not keep a gather index for each."""
    network = NumpyNetwork(load_model_dir(MODELS / "photo-q1").decoder)
    for size in range(1, 11):
        network(np.zeros((1, size, size + 1, network.input_shape[-1]), np.float32))
    convolutions = [layer for layer in network.layers if hasattr(layer, "_layouts")]
    assert convolutions and all(len(layer._layouts._layouts) <= 4 for layer in convolutions)


def test_commands_give_blas_one_thread():
    """The sender's and receiver's stages overlap in threads; BLAS's own spinning threads only compete with them."""
    import subprocess
    import sys

    script = (
        "import numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from latentlink.shared.cli_help import command_runtime\n"
        "command_runtime()\n"
        "print(max(pool['num_threads'] for pool in threadpool_info() if pool['user_api'] == 'blas'))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


def test_a_transposed_convolution_with_few_outputs_sums_taps_in_bands_like_its_phases():
    """A photo decoder's last layer (3 of 64 channels) multiplies every pixel by every tap and sums what lands on
    each output, one image in bands of output rows (three here) on the runtime's threads: the phases' result."""
    import dataclasses

    info = _network((100, 201, 64), [L.Conv2DTranspose(3, 5, 2, "same", activation="sigmoid")], seed=5)
    (layer,) = NumpyNetwork(info).layers
    assert layer.taps is not None
    image = np.random.default_rng(3).normal(size=(1, 100, 201, 64)).astype(np.float32)
    phases = dataclasses.replace(layer, taps=None)(image)
    np.testing.assert_allclose(layer(image), phases, rtol=1e-5, atol=1e-6)
    try:
        set_threads(2)
        np.testing.assert_array_equal(layer(image), NumpyNetwork(info).layers[0](image))
    finally:
        set_threads(1)
