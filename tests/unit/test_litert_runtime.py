"""The LiteRT runtime gives each image the same floats however it is batched or threaded, keeps few interpreters,
says nothing on standard error, and leaves to the numpy runtime what it cannot express or prepare (against
TensorFlow: test_cpu_runtimes.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from latentlink.shared.litert_runtime import LiteNetwork, Unsupported
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.network_runtime import load_network
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
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


def test_litert_says_nothing_on_standard_error():
    """LiteRT announces its XNNPACK delegate on standard error once per process; the commands' output stays ours."""
    script = (
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
