"""Image input: every format Pillow reads, greyscale conversion, sizes, discovery and output names."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from latentlink.shared.image_io import (
    MAX_FILE_BYTES,
    ImageError,
    encode_png,
    encode_pngs,
    find_sources,
    output_name,
    read_image,
)
from tests.conftest import SAMPLES

DIGIT = np.asarray(Image.open(SAMPLES / "test_00000.png"))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".pgm", ".tiff", ".webp"])
def test_lossless_formats_read_back_exactly(tmp_path: Path, suffix):
    path = tmp_path / f"digit{suffix}"
    options = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(DIGIT, mode="L").save(path, **options)
    np.testing.assert_array_equal(read_image(path, (28, 28)), DIGIT)


def test_jpeg_and_colour_images_become_greyscale(tmp_path: Path):
    Image.fromarray(DIGIT, mode="L").convert("RGB").save(tmp_path / "digit.jpg", quality=95)
    Image.fromarray(DIGIT, mode="L").convert("RGBA").save(tmp_path / "digit.png")
    jpeg, rgba = read_image(tmp_path / "digit.jpg", (28, 28)), read_image(tmp_path / "digit.png", (28, 28))
    assert jpeg.shape == rgba.shape == (28, 28) and jpeg.dtype == np.uint8
    np.testing.assert_array_equal(rgba, DIGIT)
    assert np.abs(jpeg.astype(int) - DIGIT).mean() < 3


def test_wrong_size_is_reported_unless_resize_is_asked(tmp_path: Path):
    Image.fromarray(DIGIT, mode="L").resize((30, 20)).save(tmp_path / "odd.png")
    with pytest.raises(ImageError, match="30x20, the model takes 28x28"):
        read_image(tmp_path / "odd.png", (28, 28))
    assert read_image(tmp_path / "odd.png", (28, 28), resize=True).shape == (28, 28)


def test_a_folder_is_listed_in_the_order_of_its_names_parts(tmp_path: Path):
    # Part by part: a folder's files come together, before a sibling whose name continues past the folder's.
    names = ["a.b.png", "a/b.png", "a/c/d.png", "a-/x.png", "a0.png", "a/b/e.png", "ab.png", "a/a.png", "A.png"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(encode_png(DIGIT))
    assert [s.name for s in find_sources(tmp_path, (28, 28))] == sorted(names, key=lambda name: name.split("/"))


def test_sources_are_found_recursively_sorted_and_hidden_files_skipped(tmp_path: Path):
    for name in ["b.png", "a/z.png", "a/c.png", ".hidden.png", ".git/x.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(DIGIT, mode="L").save(tmp_path / name)
    assert [s.name for s in find_sources(tmp_path, (28, 28))] == ["a/c.png", "a/z.png", "b.png"]


def test_array_of_the_wrong_shape_is_refused(tmp_path: Path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ImageError, match=r"expected \[N, 28, 28\] of uint8, uint16"):
        find_sources(tmp_path / "bad.npy", (28, 28))
    np.save(tmp_path / "bad.npy", np.zeros((3, 28, 28), np.int64))
    with pytest.raises(ImageError, match="int64"):
        find_sources(tmp_path / "bad.npy", (28, 28))


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("a.jpg", "a.png"),
        ("d/e/f.tiff", "d/e/f.png"),
        ("raw", "raw.png"),
        ("v1.2/x", "v1.2/x.png"),
        ("a.b.c", "a.b.png"),
        # names ending in .png: the same name, except where the suffix is the whole last part
        ("a.png", "a.png"),
        ("d/x.y.png", "d/x.y.png"),
        ("..png", "..png"),
        (".png", ".png.png"),
        ("d/.png", "d/.png.png"),
        ("/a.png", "a.png"),
        ("a.PNG", "a.png"),
    ],
)
def test_output_name_keeps_the_relative_path_with_suffix_png(name, written):
    assert output_name(name) == written


@pytest.mark.parametrize("shape", [(28, 28), (1, 1), (3, 17), (64, 1), (5, 9, 3), (1, 40, 3)])
def test_written_pngs_read_back_exactly_with_libpng_and_pillow(shape):
    """encode_png writes the PNG container itself (zlib-ng deflates the rows): any reader must take it."""
    image = np.random.default_rng(len(shape) * 100 + shape[1]).integers(0, 256, shape, np.uint8)
    data = encode_png(image)
    np.testing.assert_array_equal(imagecodecs.png_decode(data), image)
    with Image.open(io.BytesIO(data)) as opened:
        opened.verify()  # every chunk's CRC
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == ("RGB" if len(shape) == 3 else "L")
        np.testing.assert_array_equal(np.asarray(opened), image)


def test_a_stack_of_images_encodes_as_each_image_alone():
    stack = np.random.default_rng(7).integers(0, 256, (5, 11, 13, 3), np.uint8)
    assert encode_pngs(stack) == [encode_png(image) for image in stack]
    assert encode_pngs(stack[:, :, :, 0])[2] == encode_png(stack[2, :, :, 0])
    assert encode_pngs(np.zeros((0, 28, 28), np.uint8)) == []


@pytest.mark.parametrize(
    "mode, options",
    [("L", {}), ("L", {"interlace": 1}), ("1", {}), ("I;16", {}), ("P", {}), ("LA", {})],
)
def test_png_fast_path_and_pillow_agree_on_every_png_kind(tmp_path: Path, mode, options):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "x.png"
    if mode == "I;16":  # 16-bit samples span 0..65535: scaled to 8 bits, where Pillow's convert("L") clips
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path, **options)
        np.testing.assert_array_equal(read_image(path, (28, 28)), pixels)
        return
    Image.fromarray(pixels, mode="L").convert(mode).save(path, **options)
    with Image.open(path) as image:
        want = np.asarray(image.convert("L"))
    np.testing.assert_array_equal(read_image(path, (28, 28)), want)


def test_encoded_png_is_a_standard_8_bit_greyscale_png(tmp_path: Path):
    (tmp_path / "x.png").write_bytes(encode_png(DIGIT))
    with Image.open(tmp_path / "x.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), DIGIT)


def test_corrupt_png_body_and_oversized_files_are_image_errors(tmp_path: Path):
    data = bytearray(encode_png(DIGIT))
    data[40:60] = bytes(20)  # keeps the header, breaks the compressed pixels
    (tmp_path / "broken.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "broken.png", (28, 28))
    with open(tmp_path / "huge.png", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="larger than"):
        read_image(tmp_path / "huge.png", (28, 28))
    if Path("/dev/zero").exists():  # a file that reports no size still reads no more than the bound
        with pytest.raises(ImageError, match="larger than"):
            read_image(Path("/dev/zero"), (28, 28))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_file_that_arrives_in_pieces_is_read_whole(tmp_path: Path):
    # A pipe reports no size and gives its bytes as they come: the read goes on until the end.
    data = encode_png(DIGIT)
    os.mkfifo(tmp_path / "piped.png")

    def write_in_two_pieces() -> None:
        with open(tmp_path / "piped.png", "wb", buffering=0) as pipe:
            pipe.write(data[:50])
            time.sleep(0.2)
            pipe.write(data[50:])

    writer = threading.Thread(target=write_in_two_pieces)
    writer.start()
    try:
        np.testing.assert_array_equal(read_image(tmp_path / "piped.png", (28, 28)), DIGIT)
    finally:
        writer.join()


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path: Path):
    Image.fromarray(DIGIT.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # I;16: 0..65535
    Image.fromarray(DIGIT.astype(np.float32) / 255.0).save(tmp_path / "float.tiff")  # F: 0.0..1.0
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png", (28, 28)), DIGIT)
    np.testing.assert_array_equal(read_image(tmp_path / "float.tiff", (28, 28)), DIGIT)
    Image.fromarray(DIGIT.astype(np.float32)).save(tmp_path / "float255.tiff")  # floats past 1.0: refused, not clipped
    with pytest.raises(ImageError, match=r"float pixels outside \[0, 1\]"):
        read_image(tmp_path / "float255.tiff", (28, 28))


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_arrays_of_16_bit_and_float_images_are_scaled(tmp_path: Path, dtype):
    scaled = DIGIT.astype(np.uint16) * 257 if dtype == "uint16" else DIGIT.astype(dtype) / 255.0
    np.save(tmp_path / "digits.npy", np.stack([scaled, scaled]))
    sources = find_sources(tmp_path / "digits.npy", (28, 28))
    assert len(sources) == 2
    np.testing.assert_array_equal(sources[1].load(), DIGIT)


def test_resize_keeps_the_aspect_ratio_pads_with_black_and_counts(tmp_path: Path):
    from latentlink.shared.image_io import FitResize

    Image.new("L", (56, 28), 255).save(tmp_path / "wide.png")  # white, twice as wide as high
    resizer = FitResize()
    pixels = read_image(tmp_path / "wide.png", (28, 28), resize=resizer)
    assert resizer.count == 1
    assert (pixels[7:21] == 255).all(), "the image, scaled to 28x14, sits in the middle"
    assert (pixels[:7] == 0).all() and (pixels[21:] == 0).all(), "black bands above and below"


def test_folder_search_skips_and_reports_what_is_not_an_image(tmp_path: Path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(DIGIT).save(folder / "a.png")
    Image.fromarray(DIGIT).save(folder / "sub" / "b.jpeg")
    Image.fromarray(DIGIT).save(folder / "c.TIF")  # formats Pillow registers only when asked for
    Image.fromarray(DIGIT).save(folder / "d.webp")
    (folder / "README.txt").write_text("notes")
    (folder / "data.csv").write_text("1,2")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    (folder / "linked").symlink_to(folder / "sub")
    skipped: dict[str, str] = {}
    names = [s.name for s in find_sources(folder, (28, 28), skipped=skipped)]
    assert names == ["a.png", "c.TIF", "d.webp", "sub/b.jpeg"]
    assert skipped == {
        "README.txt": "no image extension",
        "data.csv": "no image extension",
        "dangling.png": "dangling link",
        "linked/": "symlinked folder, not followed",
    }


def test_a_folder_of_only_other_files_says_what_it_skipped(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match=r"has no image files to send \(1 other files skipped: no image extension"):
        find_sources(tmp_path, (28, 28))


def test_a_file_that_claims_to_be_an_image_fails_with_a_clean_reason(tmp_path: Path):
    (tmp_path / "fake.png").write_text("I am not a PNG")
    with pytest.raises(ImageError) as caught:
        read_image(tmp_path / "fake.png", (28, 28))
    assert str(caught.value) == "not a readable image (UnidentifiedImageError: not a recognised image format)"


@pytest.mark.parametrize("inputs", ["folder", "array"])
def test_choosing_the_model_lists_the_inputs_once(tmp_path: Path, monkeypatch, inputs):
    """The sample that picks the model and the sources it reads come from one listing (they came from two)."""
    from latentlink.shared import image_io
    from latentlink.shared.model_choice import choose_model

    path = SAMPLES
    if inputs == "array":
        path = tmp_path / "digits.npz"
        np.savez(path, x_test=np.stack([read_image(SAMPLES / f"test_0000{i}.png", (28, 28)) for i in range(5)]))
    lister = "_walk" if inputs == "folder" else "_load_array"
    calls: list[str] = []
    original = getattr(image_io, lister)
    monkeypatch.setattr(image_io, lister, lambda *args: calls.append(lister) or original(*args))
    model, sources, note = choose_model([path], None, None, None, {})
    assert calls == [lister]
    assert model.image_shape == (28, 28) and "digits" in note
    assert [s.name for s in sources] == [s.name for s in find_sources(path, (28, 28))]
    assert all(s.load().shape == (28, 28) for s in sources)


@pytest.mark.parametrize("photo", [False, True])
def test_choosing_the_model_makes_sources_of_the_sample_alone_then_of_every_file_once(
    tmp_path: Path, monkeypatch, photo
):
    """The sample is read at any size from its own files; every file becomes a source once, at the chosen shape."""
    from latentlink.shared import model_choice
    from latentlink.shared.image_io import ANY_SIZE

    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(100):
        (folder / f"{i:03d}.png").write_bytes(encode_png(DIGIT))
    if photo:  # the last file, which the sample reaches, is not a digit
        (folder / "zz.png").write_bytes(encode_png(np.zeros((40, 50), np.uint8)))
    built: list[tuple[tuple[int, ...], int]] = []
    original = model_choice.sources_at

    def counted(listing, shape, *rest):
        built.append((shape, len(listing.files)))
        return original(listing, shape, *rest)

    monkeypatch.setattr(model_choice, "sources_at", counted)
    model, sources, note = model_choice.choose_model([folder], None, None, None, {})
    files = 101 if photo else 100
    assert ("photos" if photo else "digits") in note and len(sources) == files
    assert built == [(ANY_SIZE, model_choice.SAMPLE_IMAGES), (ANY_SIZE if photo else (28, 28), files)]
