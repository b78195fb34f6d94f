"""The numpy runtime: the same floats however a batch is cut, bands and layouts, photos like TensorFlow (both CPU
runtimes against TensorFlow layer by layer: test_cpu_runtimes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
from tests.conftest import MODELS
from tests.unit.test_cpu_runtimes import L, _network


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
