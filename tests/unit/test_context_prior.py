"""The context prior over latent vectors: exact integer tables chosen latent by latent, checked on load."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from latentlink.shared.context_coding import ContextTables
from latentlink.shared.entropy_coding import BitstreamError
from latentlink.shared.integer_network import IntegerNetwork
from latentlink.shared.keras_bridge import network_from_keras
from latentlink.shared.model_format import (
    ModelFormatError,
    network_to_bytes,
    parse_network,
    tensor_from_array,
    tensor_to_array,
)
from latentlink.shared.proto import model_pb2
from latentlink.train.autoencoder import rd_autoencoder
from latentlink.train.context_prior import MEAN_BINS, SCALES, ContextPrior, context_prior_proto, fit_tables
from tests.conftest import outputs_under_thread_counts

LATENT = 8


@pytest.fixture(scope="module")
def decoder() -> model_pb2.Network:
    import keras

    keras.utils.set_random_seed(5)
    prior = ContextPrior(LATENT, hidden=(16, 16))
    prior.build(None)
    network = network_from_keras(rd_autoencoder(LATENT, 4).decoder, model_pb2.ROLE_DECODER, "ctx")
    network.context_prior.CopyFrom(context_prior_proto(prior, _latents(1000, seed=9)))
    return parse_network(network_to_bytes(network)).network


def _latents(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0, 2.0, (n, LATENT)))


def test_latents_round_trip_exactly_and_cost_what_the_tables_say(decoder):
    tables = ContextTables(decoder)
    latents = _latents()
    data = tables.encode(latents)
    np.testing.assert_array_equal(tables.decode(data, len(latents)), latents)
    assert abs(8 * len(data) - tables.bits(latents).sum()) < 64 + 32 * LATENT  # ANS overhead: a few words
    assert tables.encode(latents) == data


def test_each_latents_table_depends_only_on_the_latents_before_it(decoder):
    tables = ContextTables(decoder)
    latents = _latents(50)
    whole, rows = tables.choose(latents)
    for d in range(LATENT):
        changed = latents.copy()
        changed[:, d:] = 0  # what the decoder holds when it reaches latent d
        again_whole, again_rows = tables.choose(changed)
        np.testing.assert_array_equal(again_rows[:, d], rows[:, d])
        np.testing.assert_array_equal(again_whole[:, d], whole[:, d])


def test_tables_reach_twice_the_largest_scale_predicted_for_the_training_latents(decoder):
    prior = decoder.context_prior
    for spread in (0.3, 3.0):
        latents = _latents(1000, seed=4) * spread // 2
        refit = fit_tables(prior, latents)
        assert refit.layers == prior.layers and refit.mean_bins in MEAN_BINS
        log_scales = IntegerNetwork.from_proto(prior).outputs(latents[:, None, :])[:, 0, LATENT:]
        wanted = 2 * np.exp(log_scales.max() / 2.0**prior.fraction_bits)
        levels = len(tensor_to_array(refit.thresholds)) + 1
        assert SCALES[levels - 1] >= min(wanted, SCALES[-1]) and (levels == 1 or SCALES[levels - 2] < wanted)
        network = model_pb2.Network()
        network.CopyFrom(decoder)
        network.context_prior.CopyFrom(refit)
        tables = ContextTables(parse_network(network_to_bytes(network)).network)
        wide = _latents(300, seed=5) * 4  # scales past the last table: coded with it, at a cost, exactly
        np.testing.assert_array_equal(tables.decode(tables.encode(wide), len(wide)), wide)


def test_a_prior_that_looks_ahead_is_refused(decoder):
    network = model_pb2.Network()
    network.CopyFrom(decoder)
    layer = network.context_prior.layers[0]
    kernel = np.frombuffer(layer.kernel.data, "<i4").reshape(tuple(layer.kernel.shape)).copy()
    kernel[0, 0, LATENT - 1, :] = 1  # the last latent feeds every hidden unit
    layer.kernel.CopyFrom(tensor_from_array(kernel))
    with pytest.raises(ModelFormatError, match="depends on its own latent or a later one"):
        parse_network(network_to_bytes(network))


def test_a_truncated_bitstream_is_an_error(decoder):
    tables = ContextTables(decoder)
    data = tables.encode(_latents())
    with pytest.raises(BitstreamError):
        tables.decode(data[: len(data) // 2], 200)


_TABLES_SCRIPT = """
import hashlib, sys
import numpy as np
from latentlink.shared.context_coding import ContextTables
from latentlink.shared.model_format import parse_network
tables = ContextTables(parse_network(open(sys.argv[1], "rb").read()).network)
latents = np.round(np.random.default_rng(3).laplace(0, 3.0, (500, int(sys.argv[2]))))
whole, rows = tables.choose(latents)
print(hashlib.sha256(whole.tobytes() + rows.tobytes() + tables.encode(latents)).hexdigest())
"""


def test_tables_and_bitstream_are_the_same_under_any_thread_count(decoder, tmp_path):
    """BLAS splits the MADE's sums differently across threads; the chosen tables must not change."""
    path = tmp_path / "decoder.lln"
    path.write_bytes(network_to_bytes(decoder))
    assert len(outputs_under_thread_counts(_TABLES_SCRIPT, str(path), str(LATENT))) == 1


def test_golden_context_bitstream():
    """Seeded integer latents coded with the shipped q2 (context prior): these exact bytes, on any machine."""
    from latentlink.shared.model_dir import load_model_dir

    model = load_model_dir("q2")
    assert model.decoder.digest == GOLDEN_DECODER, "q2 changed: pin its golden bitstream again"
    tables = ContextTables(model.decoder.network)
    latents = np.round(np.random.default_rng(2026).laplace(0, 2.0, (64, tables.latent)))
    data = tables.encode(latents)
    np.testing.assert_array_equal(tables.decode(data, len(latents)), latents)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256, f"{len(data)} bytes"


GOLDEN_DECODER = "7c014384cf581788455c00407cdbe211c82518df37bdc0e2ae973e4c40ae907f"
GOLDEN_SHA256 = "39019e68bf103a9661265837fe9a4a6e53652e5f9feec6c9dbc9f0ec55c85685"
