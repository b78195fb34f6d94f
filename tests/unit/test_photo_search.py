"""Sender-side search for photo models: a lower cost than rounding, decoded by the receiver exactly as predicted."""

from __future__ import annotations

import numpy as np
import pytest

from latentlink import compress, decompress
from latentlink.sender.encode import BatchEncoder
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.shared.photo_codec import PhotoLatents
from tests.e2e.test_photos import _picture


@pytest.fixture(scope="module")
def encoder():
    return BatchEncoder(load_model_dir(quality_model_dir(1, photos=True)), "cpu")


def _cost(encoder: BatchEncoder, image: np.ndarray, latents: PhotoLatents, data: bytes) -> float:
    """What the search minimises, measured as users do: bits per pixel of the bitstream + lambda x 255^2 x the MSE
    of the 8-bit image the receiver writes (in [0, 1] units)."""
    written = encoder.reconstruct_photo(latents, (*image.shape[:2], 1 if image.ndim == 2 else 3))
    mse = np.mean((written.astype(np.float64) - image) ** 2) / 255.0**2
    return 8 * len(data) / (image.shape[0] * image.shape[1]) + encoder.model.card["config"]["lmbda"] * 255.0**2 * mse


@pytest.mark.parametrize("shape", [(128, 192, 3), (17, 300, 1)])
def test_search_costs_less_than_rounding_in_the_images_own_size_and_mode(encoder, shape):
    image = _picture(shape, seed=4)
    rounded, rounded_data = encoder.encode_photo(image, effort=0)
    searched, searched_data = encoder.encode_photo(image, effort=1)
    assert searched.z.shape == rounded.z.shape and searched.y.shape == rounded.y.shape
    np.testing.assert_array_equal(searched.z, rounded.z)  # the side information stays the encoder's
    assert not np.array_equal(searched.y, rounded.y)
    assert _cost(encoder, image, searched, searched_data) < 0.99 * _cost(encoder, image, rounded, rounded_data)


def test_searched_photos_decode_on_the_receiver_side_as_the_sender_predicted(encoder):
    image = _picture((64, 128, 3), seed=5)
    latents, _ = encoder.encode_photo(image, effort=1)
    data = compress([image], quality=1, effort=1)
    np.testing.assert_array_equal(decompress(data)[0], encoder.reconstruct_photo(latents, (64, 128, 3)))
    assert not np.array_equal(decompress(data)[0], decompress(compress([image], quality=1))[0])
