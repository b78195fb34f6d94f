"""The LiteRT runtime gives each image the same floats however it is batched or threaded, keeps few interpreters,
says nothing on standard error, and leaves to the numpy runtime what it cannot express or prepare (against
TensorFlow: test_cpu_runtimes.py)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from latentlink.shared.litert_runtime import LiteNetwork, Unsupported
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import (
    FORMAT_VERSION,
    ModelFormatError,
    network_to_bytes,
    parse_network,
    spatial_output,
    tensor_from_array,
)
from latentlink.shared.network_runtime import load_network
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
from latentlink.shared.proto import model_pb2
from tests.conftest import MODELS
from tests.unit.test_cpu_runtimes import CASES, NOT_IN_LITERT, L, _network


def test_what_it_cannot_express_runs_on_numpy():
    shape, layers = CASES[NOT_IN_LITERT]
    info = _network(shape, layers, seed=1)
    with pytest.raises(Unsupported, match="gdn|affine"):
        LiteNetwork(info)
    assert isinstance(load_network(info, "cpu"), NumpyNetwork)
    photo = load_model_dir(MODELS / "photo-q1")
    assert isinstance(load_network(photo.decoder, "cpu"), NumpyNetwork)
    assert isinstance(load_network(photo.encoder, "cpu", hyper=True), NumpyNetwork)
    assert isinstance(load_network(load_model_dir(MODELS / "q4").decoder, "cpu"), LiteNetwork)


@pytest.mark.parametrize("name", ["q4", "seed-k64"])
def test_an_image_gives_the_same_floats_in_any_batch_on_any_threads(name):
    """A resumed session batches differently; its pixels must not change. 300 = 9 chunks of 32 + 8 + 4 for q4."""
    model = load_model_dir(MODELS / name)
    encoder, decoder = LiteNetwork(model.encoder), LiteNetwork(model.decoder)
    images = np.random.default_rng(1).random((300, *encoder.input_shape), np.float32)
    latents = np.round(np.random.default_rng(0).normal(size=(300, decoder.input_shape[0])) * 3).astype(np.float32)
    whole = encoder(images), decoder(latents)
    try:
        for threads in (1, 2, 3):
            set_threads(threads)
            for size in (1, 7, 64, 100, 299):
                for network, batch, expected in ((encoder, images, whole[0]), (decoder, latents, whole[1])):
                    parts = [network(batch[i : i + size]) for i in range(1, 300, size)]  # shifted by one image
                    np.testing.assert_array_equal(np.concatenate(parts), expected[1:])
            np.testing.assert_array_equal(decoder(latents, finish=to_uint8), to_uint8(whole[1]))
    finally:
        set_threads(1)


def test_a_batch_of_the_wrong_shape_or_none_at_all():
    network = LiteNetwork(_network((13,), [L.Dense(2)], seed=0))
    with pytest.raises(ValueError, match="does not match"):
        network(np.zeros((2, 12), np.float32))
    assert network(np.zeros((0, 13), np.float32)).shape == (0, 2)


@pytest.mark.parametrize(
    "first",
    ["", "from latentlink.shared.network_runtime import preload_cpu_runtime\npreload_cpu_runtime()\n"],
    ids=["network first (a sender)", "started first (a receiver, after it listens)"],
)
def test_litert_says_nothing_on_standard_error(first):
    """LiteRT announces its XNNPACK delegate on standard error once per process; the commands' output stays ours."""
    script = first + (
        "import numpy as np\n"
        "from latentlink.shared.litert_runtime import LiteNetwork\n"
        "from latentlink.shared.model_dir import load_model_dir, shipped_model_dir\n"
        "network = LiteNetwork(load_model_dir(shipped_model_dir('q4')).decoder)\n"
        "network(np.zeros((3, 32), np.float32))\n"
        "import sys; print('after', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stderr == "after\n"


def test_a_network_litert_cannot_prepare_runs_on_numpy(monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    def refuse(self):
        raise RuntimeError("Failed to prepare")

    monkeypatch.setattr(Interpreter, "allocate_tensors", refuse)
    decoder = load_model_dir(MODELS / "q4").decoder
    with pytest.raises(Unsupported, match="cannot prepare"):
        LiteNetwork(decoder)
    assert isinstance(load_network(decoder, "cpu"), NumpyNetwork)


def test_calls_on_many_threads_keep_few_interpreters():
    """A receiver decodes each session on its own thread: interpreters (a few MB each) must not pile up per thread."""
    import threading

    from latentlink.shared import litert_runtime

    network = LiteNetwork(load_model_dir(MODELS / "q4").decoder)
    latents = np.round(np.random.default_rng(0).normal(size=(70, 32)) * 3).astype(np.float32)  # chunks 32, 32, 4, 2
    expected = network(latents)
    results, start = [], threading.Barrier(6)

    def decode() -> None:
        start.wait()
        results.append(network(latents))

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(np.array_equal(result, expected) for result in results)
    assert {rows for rows, _ in network._idle} == {32, 4, 2}
    assert all(len(idle) <= litert_runtime._IDLE_INTERPRETERS for idle in network._idle.values())


def _random_network(rng: np.random.Generator) -> model_pb2.Network:
    """A network of random conv2d, conv2d_transpose and dense layers (any kernel, stride, padding, activation,
    one output channel often), which may not be valid: the caller parses it."""
    activations = [model_pb2.ACTIVATION_LINEAR, model_pb2.ACTIVATION_RELU, model_pb2.ACTIVATION_SIGMOID]
    activations += [model_pb2.ACTIVATION_TANH, model_pb2.ACTIVATION_LEAKY_RELU]
    net = model_pb2.Network(format_version=FORMAT_VERSION, role=model_pb2.ROLE_DECODER, model_name="random")
    shape = tuple(int(d) for d in rng.integers(1, 9, 3))
    net.input_shape.extend(shape)

    def weights(spec, kernel_shape: tuple[int, ...], out: int) -> None:
        spec.activation = int(rng.choice(activations))
        spec.kernel.CopyFrom(tensor_from_array(rng.normal(0, 0.5, kernel_shape).astype(np.float32)))
        spec.bias.CopyFrom(tensor_from_array(rng.normal(0, 0.5, out).astype(np.float32)))

    for _ in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["conv2d", "conv2d_transpose", "dense"]))
        out = int(rng.choice([1, 1, 2, 3, 5, 8, 17]))
        if kind == "dense":
            net.layers.add().flatten.SetInParent()
            weights(net.layers.add().dense, (math.prod(shape), out), out)
            shape = (out,)
            break
        (h, w, c), (kh, kw), s = shape, (int(k) for k in rng.integers(1, 6, 2)), int(rng.integers(1, 5))
        same = bool(rng.random() < 0.6)
        try:
            size = spatial_output(kind, (h, w), (kh, kw), s, same)
        except ModelFormatError:  # no output left
            break
        if max(size) > 64:
            break
        spec = getattr(net.layers.add(), kind)
        spec.stride, spec.padding = s, model_pb2.PADDING_SAME if same else model_pb2.PADDING_VALID
        weights(spec, (kh, kw, c, out) if kind == "conv2d" else (kh, kw, out, c), out)
        shape = (*size, out)
    net.output_shape.extend(shape)
    return net


def test_random_networks_run_on_litert_as_on_numpy():
    """LiteRT runs what senders upload: any valid mix of kernels, strides, paddings and activations must neither
    crash the receiver nor compute something else (a one-off run of ~2,300 such networks found no difference)."""
    rng, ran = np.random.default_rng(7), 0
    while ran < 200:
        try:
            info = parse_network(network_to_bytes(_random_network(rng)))
        except ModelFormatError:
            continue  # no layer at all, say
        batch = rng.normal(0, 1, (int(rng.integers(1, 40)), *info.input_shape)).astype(np.float32)
        np.testing.assert_allclose(LiteNetwork(info)(batch), NumpyNetwork(info)(batch), rtol=1e-4, atol=1e-4)
        ran += 1


def test_without_litert_the_networks_run_on_numpy(monkeypatch, caplog):
    """A machine where LiteRT cannot be imported (a broken install) still codes, on numpy, and says so once."""
    import latentlink.shared
    from latentlink.shared import network_runtime

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # `import ai_edge_litert` raises ImportError
    monkeypatch.delitem(sys.modules, "latentlink.shared.litert_runtime")
    monkeypatch.delattr(latentlink.shared, "litert_runtime")
    monkeypatch.setattr(network_runtime, "_told", set())
    decoder = load_model_dir(MODELS / "q4").decoder
    with caplog.at_level("WARNING"):
        network_runtime.preload_cpu_runtime()
        assert isinstance(load_network(decoder, "cpu"), NumpyNetwork)
        assert isinstance(load_network(decoder, "cpu"), NumpyNetwork)
    assert [record.getMessage().count("LiteRT could not be imported") for record in caplog.records] == [1]
