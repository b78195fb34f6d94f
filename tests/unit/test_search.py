"""Sender-side search: never worse than rounding for MSE + beta x bits, and the receiver decodes it as sent."""

from __future__ import annotations

import numpy as np

from latentlink import compress, decompress
from latentlink.sender.encode import BatchEncoder
from latentlink.sender.search import refine
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.shared.network_runtime import decode_images


def test_search_lowers_the_cost_it_is_given_for_every_image(mnist):
    _, x_test = mnist
    images = x_test[:64]
    model = load_model_dir(quality_model_dir(2))
    encoder = BatchEncoder(model, "cpu")
    continuous = encoder._networks.result()[0](images.astype(np.float32) / 255.0).astype(np.float64)
    beta = model.card["config"]["beta"]

    def cost(latents):
        decoded = encoder.decoder_network(latents.astype(np.float32))
        return np.mean((decoded - images / 255.0) ** 2, axis=(1, 2)) + beta * encoder.tables.bits(latents)

    rounded = refine(encoder.decoder_network, encoder.tables, images, continuous, beta, 0)
    searched = refine(encoder.decoder_network, encoder.tables, images, continuous, beta, 1)
    np.testing.assert_array_equal(rounded, np.round(continuous))
    assert np.all(cost(searched) <= cost(rounded) + 1e-12)
    assert cost(searched).mean() < 0.97 * cost(rounded).mean()


def test_searched_latents_decode_on_the_receiver_side_as_the_sender_predicted(mnist):
    _, x_test = mnist
    data = compress(x_test[:32], quality=2, effort=1)
    assert not np.array_equal(decompress(data), decompress(compress(x_test[:32], quality=2)))
    encoder = BatchEncoder(load_model_dir(quality_model_dir(2)), "cpu", effort=1)
    np.testing.assert_array_equal(decompress(data), decode_images(encoder.decoder_network, encoder.encode(x_test[:32])))
