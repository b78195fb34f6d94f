"""Entropy coding of integer latents: exact round trips, escapes, corrupt streams, valid tables."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink.shared.entropy_coding import BitstreamError, EntropyTables
from latentlink.shared.model_format import ModelFormatError, network_to_bytes, parse_network
from latentlink.train.factorized_prior import FactorizedPrior, integer_pmfs
from tests.unit.test_serde import _tables


@pytest.fixture(scope="module")
def prior_tables() -> EntropyTables:
    import keras

    keras.utils.set_random_seed(0)
    prior = FactorizedPrior(16)
    prior.build(None)
    return EntropyTables(*integer_pmfs(prior), precision=16)


def test_tables_from_a_prior_are_valid_frequency_tables(prior_tables):
    t = prior_tables
    for row, length in zip(t.pmfs, t.lengths, strict=True):
        assert row[:length].min() >= 1 and row[length:].max(initial=0) == 0
        assert row.sum() == 1 << 16


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_random_latents_round_trip_exactly(prior_tables, scale):
    latents = np.round(np.random.default_rng(int(scale)).laplace(0, scale, size=(300, 16)))
    data = prior_tables.encode(latents)
    np.testing.assert_array_equal(prior_tables.decode(data, 300), latents)


def test_adversarial_latents_use_the_escape_path(prior_tables):
    latents = np.zeros((4, 16))
    latents[0] = 2**31 - 1
    latents[1] = -(2**31) + 1
    latents[2, ::2] = 1e9
    data = prior_tables.encode(latents)
    np.testing.assert_array_equal(prior_tables.decode(data, 4), latents)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2.0**31, 0.5])
def test_values_that_cannot_be_coded_are_refused_not_clamped(prior_tables, bad):
    latents = np.zeros((2, 16))
    latents[1, 3] = bad
    with pytest.raises(ValueError, match="finite integers"):
        prior_tables.encode(latents)


def test_whole_batch_costs_its_ideal_bits_plus_one_coder_state():
    tables = _tables()
    latents = np.round(np.random.default_rng(5).laplace(0, 1.0, size=(256, 8)))
    together = len(tables.encode(latents))
    assert together <= tables.bits(latents).sum() / 8 + 8
    one_by_one = sum(len(tables.encode(row[None])) for row in latents)
    assert together < 0.6 * one_by_one


def test_truncated_or_padded_bitstreams_are_errors(prior_tables):
    latents = np.round(np.random.default_rng(9).laplace(0, 3, size=(50, 16)))
    data = prior_tables.encode(latents)
    for broken in (data[:-4], data + b"\0\0\0\1", data[:-1]):
        with pytest.raises(BitstreamError):
            prior_tables.decode(broken, 50)


def test_decoder_with_inconsistent_tables_is_rejected(prior_tables):
    from latentlink.shared.keras_bridge import network_from_keras
    from latentlink.shared.proto import model_pb2
    from latentlink.train.autoencoder import rd_autoencoder

    network = network_from_keras(rd_autoencoder(16, 4).decoder, model_pb2.ROLE_DECODER, "t")
    network.entropy_model.CopyFrom(prior_tables.to_proto())
    assert parse_network(network_to_bytes(network)).network.HasField("entropy_model")
    broken = EntropyTables(prior_tables.offsets, prior_tables.lengths, prior_tables.pmfs * 2, 16)
    network.entropy_model.CopyFrom(broken.to_proto())
    with pytest.raises(ModelFormatError, match="sum to 2"):
        parse_network(network_to_bytes(network))
