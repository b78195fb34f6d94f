"""The sender's quality prediction: exact on small sends, a systematic sample spread over every batch on large ones."""

from __future__ import annotations

import numpy as np

from latentlink.sender.encode import QualityMeter


def test_every_image_is_measured_up_to_the_exact_limit_then_one_in_eight_spread_over_the_batches():
    meter = QualityMeter(exact_images=1000, sample_every=8)  # the default samples 1 in 32 past 1,024
    chosen = [meter.rows(256) for _ in range(4 + 8)]
    np.testing.assert_array_equal(chosen[0], np.arange(256))
    np.testing.assert_array_equal(chosen[3], np.r_[np.arange(232), np.arange(232, 256, 8)])
    assert all(np.array_equal(rows, np.arange(0, 256, 8)) for rows in chosen[4:])  # every batch, evenly
    assert len(meter.rows(0)) == 0 and meter.offered == 12 * 256


def test_the_default_sample_predicts_the_written_images_quality_within_a_tenth_of_a_db(mnist):
    """Spread over every batch, ~1,300 of 10,000 digits predict their PSNR far closer than whole batches did."""
    from latentlink.sender.encode import BatchEncoder
    from latentlink.shared.metrics import quality
    from latentlink.shared.model_dir import default_model_dir, load_model_dir

    _, digits = mnist
    encoder = BatchEncoder(load_model_dir(default_model_dir()), "cpu")
    written = encoder.reconstruct(np.round(encoder.encode(digits)))
    meter = QualityMeter()
    for first in range(0, len(digits), 512):
        rows = meter.rows(min(512, len(digits) - first))
        meter.add([str(first + i) for i in rows], digits[first + rows], written[first + rows])
    assert meter.sampled == 1024 + (len(digits) - 1024 + 31) // 32
    assert abs(meter.result().psnr - quality(digits, written).psnr) < 0.1


def test_prediction_is_the_mean_squared_error_of_the_measured_images_and_counts_resends_once():
    meter = QualityMeter()
    original = np.zeros((2, 4, 4), np.uint8)
    reconstructed = np.full((2, 4, 4), 51, np.uint8)  # 0.2 off everywhere
    meter.add(["a", "b"], original, reconstructed)
    meter.add(["a"], original[:1], reconstructed[:1])  # resent after a reconnect
    assert meter.sampled == 2
    assert np.isclose(meter.result().mse, 0.04)
