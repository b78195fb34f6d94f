"""The shipped models load, meet their recorded test quality, and decode batch-independently."""

from __future__ import annotations

import numpy as np
import pytest

from shared.metrics import quality, to_uint8
from shared.model_dir import default_model_dir, load_model_dir
from shared.network_runtime import CompiledNetwork
from tests.conftest import MODELS

SHIPPED = ["default", "seed-k64"]
# Targets from the model issue: the seed's Table 2 at k = 64, and the default's bound.
MSE_TARGET = {"default": 0.005, "seed-k64": 0.011}


@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    model = load_model_dir(MODELS / request.param)
    return request.param, model, CompiledNetwork(model.encoder, "cpu"), CompiledNetwork(model.decoder, "cpu")


def test_default_model_folder_is_the_shipped_default():
    assert default_model_dir() == MODELS / "default"


def test_model_meets_its_recorded_and_target_test_mse(shipped, mnist):
    name, model, encoder, decoder = shipped
    _, x_test = mnist
    measured = quality(x_test, to_uint8(decoder(encoder(x_test.astype(np.float32) / 255.0))))
    assert measured.mse == pytest.approx(model.card["test"]["mse"], rel=0.02)
    assert measured.mse <= MSE_TARGET[name]
    assert model.latent_dim <= 64


def test_default_decoder_is_at_most_one_megabyte():
    model = load_model_dir(MODELS / "default")
    assert model.decoder.size_bytes <= 1_000_000


def test_decoding_does_not_depend_on_batching(shipped):
    _, model, _, decoder = shipped
    latents = np.random.default_rng(0).normal(size=(300, model.latent_dim)).astype(np.float32)
    whole = decoder(latents)
    singles = np.concatenate([decoder(latents[i : i + 1]) for i in range(0, 300, 37)])
    chunks = np.concatenate([decoder(latents[i : i + 64]) for i in range(0, 300, 64)])
    np.testing.assert_array_equal(singles, whole[::37])
    np.testing.assert_array_equal(chunks, whole)
