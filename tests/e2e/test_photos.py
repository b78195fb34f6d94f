"""Images of any size through the real commands: odd sizes, grey and colour, a mixed folder, both output formats."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentlink import compress, decompress
from latentlink.shared.model_dir import load_model_dir, quality_model_dir
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import PROTOCOL_VERSION
from latentlink.shared.serde import OutputFormat
from tests.conftest import SAMPLES
from tests.e2e.conftest import start_receiver, visible_files
from tests.e2e.test_cli import _send, receiver_process  # noqa: F401  (a fixture)
from tests.e2e.test_library_and_cli import _latentlink
from tests.e2e.test_protocol import _chunks, _stream

# (height, width, channels): a single pixel, a strip, odd sizes, a full Kodak-sized frame, grey and colour.
SHAPES = {"dot": (1, 1, 3), "strip": (17, 300, 3), "odd": (333, 517, 1), "frame": (512, 768, 3), "grey": (40, 90, 1)}


def _picture(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A smooth picture with texture: something like a photo, not noise."""
    h, w, c = shape
    y, x = np.mgrid[:h, :w]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, c)
    layers = [120 + 90 * np.sin(x / (11.0 + k) + phase[k]) * np.cos(y / (7.0 + 2 * k)) for k in range(c)]
    image = np.clip(np.stack(layers, axis=2) + rng.normal(0, 6, (h, w, c)), 0, 255).astype(np.uint8)
    return image[:, :, 0] if c == 1 else image


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for seed, (name, shape) in enumerate(SHAPES.items()):
        Image.fromarray(_picture(shape, seed)).save(folder / f"{name}.png")
    Image.fromarray(_picture((60, 80, 3), 9)).save(folder / "sub" / "photo.jpg", quality=92)
    shutil.copy(SAMPLES / "test_00000.png", folder / "digit.png")  # a 28x28 digit among photos
    return folder


def _originals(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with Image.open(path) as image:
            found[path.relative_to(folder).with_suffix(".png").as_posix()] = np.asarray(image)
    return found


def test_a_mixed_folder_comes_back_at_its_sizes_and_modes_pixel_identical_to_decompress(
    receiver_process,  # noqa: F811
    mixed_folder,
):
    address, out, _ = receiver_process
    result = _send("--target", address, "--json", str(mixed_folder))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model"].startswith("photo-") and summary["encoding"] == "hyperprior"
    originals = _originals(mixed_folder)
    assert summary["written"] == len(originals) and not summary["failed"]
    written = {}
    for name in originals:
        with Image.open(out / summary["session_dir"] / name) as image:
            assert image.mode == ("L" if originals[name].ndim == 2 else "RGB"), name
            written[name] = np.asarray(image)
        assert written[name].shape == originals[name].shape, name
    # The library, given the same images, codes the same latents: its decoding is the receiver's, pixel for pixel.
    names = list(originals)
    local = decompress(compress([originals[n] for n in names], model=summary["model"]))
    for name, image in zip(names, local, strict=True):
        np.testing.assert_array_equal(written[name], image, err_msg=name)
        psnr = 10 * np.log10(255**2 / np.mean((image.astype(float) - originals[name]) ** 2))
        assert psnr > 12, f"{name}: {psnr:.1f} dB"  # a picture of it, not noise (quality: bench/photo_rd.py)


def test_npz_output_keeps_each_shape(tmp_path, mixed_folder):
    running = start_receiver(tmp_path / "out", tmp_path / "models", output_format=OutputFormat.NPZ)
    try:
        result = _send("--target", running.address, "--json", str(mixed_folder))
    finally:
        running.stop()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    originals = _originals(mixed_folder)
    shapes = {}
    for batch in sorted((running.out / summary["session_dir"]).glob("batch-*.npz")):
        with np.load(batch, allow_pickle=False) as data:
            names = list(data["names"])
            images = [data["images"][i] for i in range(len(names))] if "images" in data else None
            images = images or [data[f"image_{i}"] for i in range(len(names))]
            shapes.update((n, image.shape) for n, image in zip(names, images, strict=True))
    assert shapes == {name: image.shape for name, image in originals.items()}


def test_the_sender_says_which_model_it_chose(receiver_process, mixed_folder):  # noqa: F811
    address, _, _ = receiver_process
    result = _send("--target", address, str(mixed_folder))
    assert result.returncode == 0, result.stderr
    assert "model photo-q2: the inputs are photos" in result.stdout
    digits = _send("--target", address, str(SAMPLES))
    assert "model rd-q4: the inputs are 28x28 grey digits" in digits.stdout


def test_a_quality_the_photo_ladder_lacks_is_a_clear_error(mixed_folder):
    result = _send("--target", "127.0.0.1:9", "--quality", "5", str(mixed_folder))
    assert result.returncode == 2 and "photo ladder" in result.stderr and "Traceback" not in result.stderr


def _photo_hello(model) -> pb.SenderMessage:
    return pb.SenderMessage(
        hello=pb.Hello(
            protocol_version=PROTOCOL_VERSION,
            decoder_digest=model.decoder.digest,
            decoder=pb.DecoderSummary(
                image_shape=model.image_shape,
                latent_dim=model.latent_dim,
                size_bytes=model.decoder.size_bytes,
                model_name=model.name,
                has_entropy_model=True,
            ),
            encodings=[pb.LATENT_ENCODING_HYPERPRIOR],
            session="hostile",
        )
    )


@pytest.mark.parametrize(
    ("shape", "why"),
    [((60000, 60000, 3), "at most 4194304 per batch"), ((0, 10, 3), "pixels each way"), ((64, 64, 3), "corrupt")],
)
def test_a_receiver_fails_hostile_shapes_and_writes_nothing(receiver, shape, why):
    folder = quality_model_dir(1, photos=True)
    model = load_model_dir(folder)
    h, w, c = shape
    batch = pb.LatentBatch(
        decoder_digest=model.decoder.digest,
        encoding=pb.LATENT_ENCODING_HYPERPRIOR,
        latent_dim=model.latent_dim,
        count=1,
        names=zlib.compress(b"x.png"),
        shapes=[pb.ImageShape(height=h, width=w, channels=c)],
        sizes=[8],
        payload=bytes(range(8)),  # no image's bitstream
    )
    messages = [
        _photo_hello(model),
        *_chunks((folder / "decoder.lln").read_bytes()),
        pb.SenderMessage(latent_batch=batch),
        pb.SenderMessage(finish=pb.Finish(images_sent=1)),
    ]
    acks = [reply.acks for reply in _stream(receiver.address, messages) if reply.WhichOneof("kind") == "acks"]
    assert acks and acks[0].failures and why in acks[0].failures[0].error, acks
    assert not visible_files(receiver.out)


def test_an_image_over_the_receivers_pixel_limit_is_reported_not_sent(receiver_process, tmp_path):  # noqa: F811
    address, out, _ = receiver_process
    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("L", (2100, 2100), 90).save(folder / "huge.png")  # 4.4 M pixels: over the 4 M of a batch
    Image.fromarray(_picture((30, 40, 3), 1)).save(folder / "small.png")
    result = _send("--target", address, "--json", str(folder))
    summary = json.loads(result.stdout)
    assert result.returncode == 1 and summary["written"] == 1
    assert "over the receiver's 4194304 pixels" in summary["failed"]["huge.png"]


def test_latentlink_compress_info_and_decompress_keep_sizes_and_modes(mixed_folder, tmp_path):
    made = _latentlink("compress", str(mixed_folder), "-o", "photos.llnk", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "model photo-q2: the inputs are photos" in made.stdout
    assert "of any size" in _latentlink("info", "photos.llnk", cwd=tmp_path).stdout
    assert _latentlink("decompress", "photos.llnk", "-o", "restored", cwd=tmp_path).returncode == 0
    for name, original in _originals(mixed_folder).items():
        with Image.open(tmp_path / "restored" / name) as image:
            assert np.asarray(image).shape == original.shape, name


def test_the_senders_search_sends_what_the_library_searches_and_latentlink_compress_takes_it(
    receiver_process,  # noqa: F811
    tmp_path,
):
    address, out, _ = receiver_process
    folder = tmp_path / "photos"
    folder.mkdir()
    originals = {"a.png": _picture((64, 96, 3), 3), "b.png": _picture((40, 70, 1), 4)}
    for name, image in originals.items():
        Image.fromarray(image).save(folder / name)
    result = _send("--target", address, "--json", "--quality", "1", "--effort", "1", str(folder))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    searched = decompress(compress(list(originals.values()), quality=1, effort=1))
    rounded = decompress(compress(list(originals.values()), quality=1))
    for (name, _), image, plain in zip(originals.items(), searched, rounded, strict=True):
        with Image.open(out / summary["session_dir"] / name) as written:
            np.testing.assert_array_equal(np.asarray(written), image, err_msg=name)
        assert not np.array_equal(image, plain), name
    made = _latentlink("compress", str(folder), "-o", "searched.llnk", "--quality", "1", "--effort", "1", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "searched.llnk").read_bytes() == compress(
        list(originals.values()), quality=1, effort=1, names=list(originals)
    )
