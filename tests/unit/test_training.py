"""Training on a small MNIST slice: the loss falls and runs are reproducible."""

from __future__ import annotations

import numpy as np

from latentlink.shared.model_dir import load_model_dir
from latentlink.train.cli import TrainConfig, main, train_autoencoder


def test_tiny_training_run_lowers_the_loss(mnist):
    x_train, _ = mnist
    config = TrainConfig(family="conv", latent_dim=8, epochs=4, batch_size=64, train_limit=512)
    _, losses = train_autoencoder(config, x_train, progress=False)
    assert losses[-1] < 0.8 * losses[0]


def test_same_seed_gives_the_same_weights(mnist):
    x_train, _ = mnist
    config = TrainConfig(family="seed", latent_dim=8, epochs=1, batch_size=64, train_limit=256)
    first, _ = train_autoencoder(config, x_train, progress=False)
    second, _ = train_autoencoder(config, x_train, progress=False)
    for a, b in zip(first.decoder.get_weights(), second.decoder.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_command_writes_a_loadable_model_folder(mnist_path, tmp_path):
    out = tmp_path / "tiny"
    code = main(
        [
            "--family",
            "seed",
            "--latent-dim",
            "4",
            "--epochs",
            "1",
            "--train-limit",
            "256",
            "--data",
            str(mnist_path),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    files = load_model_dir(out)
    assert files.latent_dim == 4 and files.image_shape == (28, 28)
    assert files.card["decoder_digest"] == files.decoder.digest
    assert 0 < files.card["test"]["mse"] < 0.2


def test_missing_data_file_is_a_clear_error(tmp_path, capsys):
    code = main(["--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 2
    assert "cannot load MNIST" in capsys.readouterr().err
