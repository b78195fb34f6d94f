"""The sender's quality prediction: exact on small sends, a systematic sample of batches on large ones."""

from __future__ import annotations

import numpy as np

from latentlink.sender.encode import QualityMeter


def test_every_batch_is_measured_up_to_the_exact_limit_then_one_in_eight():
    meter = QualityMeter(exact_images=1024, sample_every=8)  # the default samples 1 in 16
    chosen = [meter.wants(256) for _ in range(4 + 32)]
    assert chosen[:4] == [True] * 4
    assert sum(chosen[4:]) == 4 and chosen[4:].index(True) == 7


def test_prediction_is_the_mean_squared_error_of_the_measured_images_and_counts_resends_once():
    meter = QualityMeter()
    original = np.zeros((2, 4, 4), np.uint8)
    reconstructed = np.full((2, 4, 4), 51, np.uint8)  # 0.2 off everywhere
    meter.add(["a", "b"], original, reconstructed)
    meter.add(["a"], original[:1], reconstructed[:1])  # resent after a reconnect
    assert meter.sampled == 2
    assert np.isclose(meter.result().mse, 0.04)
