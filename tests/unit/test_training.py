"""Training on a small MNIST slice: the loss falls and runs are reproducible."""

from __future__ import annotations

import re

import numpy as np
import pytest

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


def _photo_folder(folder, count: int = 4):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = 80 + 8 * i, 96
        y, x = np.mgrid[:h, :w]
        image = 128 + 100 * np.sin(x / (5.0 + i)) * np.cos(y / 6.0)
        pixels = np.clip(image[:, :, None] + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    return folder


def test_photo_training_on_a_tiny_folder_lowers_the_loss_and_writes_a_photo_model(tmp_path, capsys):
    folder = _photo_folder(tmp_path / "photos")
    out = tmp_path / "model"
    args = ["--images", str(folder), "--steps", "60", "--crop", "64", "--photo-batch", "2", "--width", "8"]
    code = main(
        [*args, "--latent-channels", "8", "--learning-rate", "3e-3", "--val-fraction", "0.25", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "skipped broken.png" in err
    losses = [float(m) for m in re.findall(r" loss=([0-9.e+-]+)", err)]
    assert len(losses) == 10 and losses[-1] < losses[0]
    model = load_model_dir(out)
    assert model.encoder.any_size and model.card["validation"]["images"] == 1
    assert model.card["train_command"].startswith("latentlink-train --images")


def test_an_init_that_does_not_fit_is_a_clear_error(tmp_path, capsys):
    """A mean-scale model cannot start a scale-only one (nor a missing folder, nor a file of other weights,
    anything): exit 2, no traceback."""
    folder = _photo_folder(tmp_path / "photos")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    small = ["--images", str(folder), "--steps", "1", "--crop", "64", "--photo-batch", "1", "--width", "8"]
    small += ["--latent-channels", "8", "--val-fraction", "0", "--quiet"]
    assert main([*small, "--out", str(tmp_path / "mean-scale")]) == 0
    assert load_model_dir(tmp_path / "mean-scale").decoder.network.hyperprior.means
    capsys.readouterr()
    for init, extra in (
        (tmp_path / "mean-scale", ["--scale-only"]),
        (tmp_path / "nowhere", []),
        (tmp_path / "other.npz", []),
    ):
        code = main([*small, *extra, "--init", str(init), "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert code == 2 and f"latentlink-train: error: --init {init} does not fit" in err and "Traceback" not in err
        assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("content", ["empty", "unreadable", "missing"])
def test_a_folder_without_usable_images_is_a_clear_error(tmp_path, capsys, content):
    folder = tmp_path / "photos"
    if content != "missing":
        folder.mkdir()
    if content == "unreadable":
        (folder / "a.png").write_bytes(b"not a png")
    code = main(["--images", str(folder), "--out", str(tmp_path / "m"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "latentlink-train: error:" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_rd_training_with_a_context_prior_writes_a_model_the_codec_uses(mnist_path, mnist, tmp_path):
    from latentlink import compress, decompress
    from latentlink.shared.context_coding import ContextTables
    from latentlink.shared.serde import coding_tables

    out = tmp_path / "ctx"
    args = ["--family", "rd", "--prior", "context", "--latent-dim", "8", "--channels", "4", "--encoder-channels", "6"]
    args += ["--epochs", "1", "--train-limit", "512", "--data", str(mnist_path)]
    code = main([*args, "--out", str(out), "--quiet"])
    assert code == 0
    model = load_model_dir(out)
    assert model.encoder.network.layers[1].conv2d.kernel.shape[-1] == 6  # after the reshape: the first convolution
    assert isinstance(coding_tables(model.decoder.network), ContextTables)
    assert model.card["test"]["table_bits_per_image"] > 0
    _, x_test = mnist
    data = compress(x_test[:64], model=out)
    assert decompress(data, out).shape == (64, 28, 28)
