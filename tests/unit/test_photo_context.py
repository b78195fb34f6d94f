"""A photo model's checkerboard context: fitted, frozen to integers, coded in two passes, refused when malformed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from latentlink.shared.integer_network import IntegerNetwork, conv2d_same
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import ModelFormatError, network_to_bytes, parse_network
from latentlink.shared.photo_codec import PhotoDecoder, PhotoEncoder, PhotoTables, anchors, pad_image
from latentlink.shared.proto import model_pb2
from latentlink.train.photo_context import (
    ContextConfig,
    context_maps,
    fit_context,
    integer_context,
    write_context_model,
)
from tests.conftest import outputs_under_thread_counts

TINY = ContextConfig(width=8, steps=60, batch_size=4, crop=8, learning_rate=1e-2)


def _images(count: int, size: int = 128, seed: int = 0) -> list[np.ndarray]:
    """Smooth colour pictures with texture, in a few sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        y, x = np.mgrid[: size + 16 * k, :size]
        base = 127 + 90 * np.sin(x / (5.0 + k)) * np.cos(y / (7.0 + k))
        out.append(np.clip(base[:, :, None] + rng.normal(0, 12, (*x.shape, 3)), 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def fitted(tiny):
    """The tiny model's maps and a context fitted on them for a few steps."""
    maps, validation = context_maps(tiny, _images(3)), context_maps(tiny, _images(1, seed=1), 1)
    model, history = fit_context(TINY, maps, validation, progress=False)
    return model, history


@pytest.fixture(scope="module")
def tiny_context_folder(tiny, fitted, tmp_path_factory):
    """The tiny model with a context whose last layer is random (a few steps leave it near zero): every path
    of the two-pass coding is taken."""
    model = fitted[0]
    kernel, bias = model.get_layer("added").get_weights()
    rng = np.random.default_rng(4)
    model.get_layer("added").set_weights([rng.normal(0, 0.3, kernel.shape), rng.normal(0, 0.3, bias.shape)])
    folder = tmp_path_factory.mktemp("tiny-context")
    write_context_model(tiny, integer_context(model), {"test": True}, folder, "tiny-context")
    return folder


@pytest.fixture(scope="module")
def tiny_context(tiny_context_folder):
    return load_model_dir(tiny_context_folder)


def test_fitting_lowers_the_bits_of_the_elements_that_are_not_anchors(fitted):
    history = fitted[1]
    assert history["val_rest_bits"] < history["val_rest_bits_before"]


@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 300, 1), (130, 70, 3)])
def test_a_context_model_round_trips_and_refines_only_the_other_elements(tiny, tiny_context, shape):
    image = _images(1, 300)[0][: shape[0], : shape[1]]
    image = image[:, :, 0] if shape[2] == 1 else image
    encoder, decoder = (
        PhotoEncoder(tiny_context.encoder, tiny_context.decoder, "cpu"),
        PhotoDecoder(tiny_context.decoder),
    )
    latents, data = encoder.encode(image)
    decoded, pixels = decoder.decode(data, *shape)
    np.testing.assert_array_equal(decoded.y, latents.y)
    np.testing.assert_array_equal(decoded.mean, latents.mean)
    assert pixels.shape == image.shape and pixels.dtype == np.uint8
    plain = PhotoTables(tiny.decoder.network)
    hyper_mean = plain.read(plain.predict(latents.z))[1]
    anchor = anchors(latents.y.shape)
    np.testing.assert_array_equal(latents.mean[anchor], hyper_mean[anchor])  # anchors: the hyperprior's alone
    if (~anchor).any():
        assert np.any(latents.mean[~anchor] != hyper_mean[~anchor])
    y = encoder.analysis(pad_image(image, 3)[None])[0]
    np.testing.assert_array_equal(latents.y, np.round(y - latents.mean))  # each rounded about its own mean


_CONTEXT_SCRIPT = """
import hashlib, sys
import numpy as np
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.photo_codec import PhotoTables
tables = PhotoTables(load_model_dir(sys.argv[1]).decoder.network)
rng = np.random.default_rng(7)
z = rng.integers(-6, 7, (5, 7, tables.side_channels))
y = rng.integers(-20, 21, (20, 28, tables.latent_channels))
print(hashlib.sha256(tables.with_context(tables.predict(z), y).tobytes()).hexdigest())
"""


def test_the_context_is_the_same_under_any_thread_count(tiny_context_folder):
    """Both ends must compute the same rows and means; BLAS splits sums differently across threads."""
    assert len(outputs_under_thread_counts(_CONTEXT_SCRIPT, str(tiny_context_folder))) == 1


def _edit(files, change) -> bytes:
    network = model_pb2.Network()
    network.CopyFrom(files.decoder.network)
    change(network.hyperprior)
    return network_to_bytes(network)


def _transposed(prior) -> None:
    prior.context[0].transpose = True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.ClearField("context_mix"), "context mix: 1..64 integer layers"),
        (lambda p: p.ClearField("context"), "hyperprior context: 1..64 integer layers"),
        (lambda p: p.context_mix.pop(), "context mix: 8 outputs, expected 16"),
        (_transposed, "only stride-1 convolutions"),
    ],
)
def test_malformed_contexts_are_refused(tiny_context, change, message):
    with pytest.raises(ModelFormatError, match=message):
        parse_network(_edit(tiny_context, change))


def test_a_context_without_means_is_refused(tiny_context, tiny_scale_only):
    network = model_pb2.Network()
    network.CopyFrom(tiny_scale_only.decoder.network)
    network.hyperprior.context.extend(tiny_context.decoder.network.hyperprior.context)
    network.hyperprior.context_mix.extend(tiny_context.decoder.network.hyperprior.context_mix)
    with pytest.raises(ModelFormatError, match="a checkerboard context needs means"):
        parse_network(network_to_bytes(network))


def test_fit_context_command_writes_a_model_with_a_context_and_refuses_what_it_cannot_fit(tiny_folder, tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for k, image in enumerate(_images(4, 256)):
        Image.fromarray(image).save(photos / f"p{k}.png")
    command = [sys.executable, "-m", "latentlink.train.cli", "--images", str(photos), "--fit-context", "--quiet"]
    command += ["--val-fraction", "0.25"]
    out = tmp_path / "fitted"
    done = subprocess.run(
        [*command, "--init", str(tiny_folder), "--steps", "20", "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    files = load_model_dir(out)
    assert len(files.decoder.network.hyperprior.context) == 1 and files.card["context"]["config"]["steps"] == 20
    before = load_model_dir(tiny_folder)
    assert files.encoder.network.layers == before.encoder.network.layers  # the transforms are as they were
    assert files.decoder.network.layers == before.decoder.network.layers
    assert files.card["validation"]["bpp"] > 0 and "validation_before" in files.card["context"]
    refused = subprocess.run([*command, "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert refused.returncode == 2 and "--fit-context needs --init" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_searching_under_a_context_leaves_the_anchors_as_the_first_search_chose(tiny_context):
    from latentlink.sender.photo_search import PhotoSearch

    encoder = PhotoEncoder(tiny_context.encoder, tiny_context.decoder, "cpu")
    search = PhotoSearch(tiny_context.decoder, encoder.tables, 0.01, "cpu")
    calls = []

    def recorded(image, padded, y, rows, mean, fixed):
        chosen = search.refine(image, padded, y, rows, mean, fixed, 10)
        calls.append((y, fixed, chosen))
        return chosen

    image = _images(1)[0][:100, :90]
    latents, data = encoder.encode(image, recorded)
    assert [fixed is None for _, fixed, _ in calls] == [True, False]
    start, fixed, chosen = calls[1]
    fixed = np.broadcast_to(fixed, chosen.shape)
    np.testing.assert_array_equal(chosen[fixed], start[fixed])
    np.testing.assert_array_equal(latents.y[fixed], calls[0][2][fixed])
    decoded = PhotoDecoder(tiny_context.decoder).decode(data, 100, 90, 3)[0]
    np.testing.assert_array_equal(decoded.y, latents.y)


def test_the_maps_a_fit_holds_are_bounded(tiny, monkeypatch):
    """Many or large images: fewer orientations each, centre crops; never more than MAX_MAPS maps."""
    import latentlink.train.photo_context as photo_context

    monkeypatch.setattr(photo_context, "MAX_MAPS", 6)
    monkeypatch.setattr(photo_context, "MAX_SIDE", 128)
    maps = context_maps(tiny, _images(4, 300))
    assert len(maps) == 4  # one orientation each: 4 x 2 would pass 6
    assert all(y.shape[:2] == (8, 8) for y, _ in maps)  # 128 pixels each way: 8 positions of y
    assert len(context_maps(tiny, _images(9, 64))) == 6


def test_a_file_from_before_the_shipped_context_still_decompresses(tmp_path):
    """Files compressed with photo-q1 before its context name the decoder without it; the shipped one, less its
    context, is that decoder, found by its digest."""
    from latentlink import compress, decompress
    from latentlink.shared.model_dir import save_model_dir
    from latentlink.shared.model_format import without_context

    shipped = load_model_dir("photo-q1")
    earlier = save_model_dir(
        tmp_path / "before", shipped.encoder.network, without_context(shipped.decoder.network), shipped.card
    )
    image = _images(1, 96)[0][:80]
    data = compress([image], model=tmp_path / "before")
    assert earlier.decoder.digest != shipped.decoder.digest
    np.testing.assert_array_equal(decompress(data)[0], decompress(data, model=tmp_path / "before")[0])
    assert decompress(data)[0].shape == image.shape


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (6, 5), (9, 12)])
def test_a_convolution_on_a_lattice_is_the_whole_one_at_those_positions(kernel_size, stride, size):
    rng = np.random.default_rng(kernel_size * 10 + stride)
    x = rng.integers(-50, 50, (*size, 3)).astype(np.float64)
    kernel = rng.integers(-9, 9, (kernel_size, kernel_size, 3, 4)).astype(np.float64)
    kernel[0, 0] = 0  # a tap that reads nothing is skipped
    whole = conv2d_same(x, kernel, stride)
    for lattice in ((0, 0), (0, 1), (1, 0), (1, 1)):
        assert np.array_equal(conv2d_same(x, kernel, stride, lattice), whole[lattice[0] :: 2, lattice[1] :: 2])


def _context_by_definition(tables: PhotoTables, outputs: np.ndarray, coded: np.ndarray) -> np.ndarray:
    """The context as the format defines it: features and mix at every position, kept where y is not an anchor."""
    features, mix = tables.context
    found = features.outputs(coded * anchors(coded.shape) * float(1 << tables.mean_fraction_bits))
    added = mix.outputs(np.concatenate([found, outputs], axis=-1))
    return np.where(anchors(outputs.shape), outputs, outputs + added)


def test_the_context_computed_only_where_it_is_used_gives_the_same_integers():
    """The shipped shape takes the half-work path; a mix that is not 1x1 (the same mix, its kernel padded to
    3x3 with zeros) takes the whole-map path; both equal the definition, on a y of odd size."""
    model = load_model_dir("photo-q2")
    tables = PhotoTables(model.decoder.network)
    rng = np.random.default_rng(7)
    _, y_shape = tables.shapes(72, 104)
    coded = rng.integers(-6, 7, y_shape).astype(np.float64)
    outputs = tables.predict(rng.integers(-4, 5, tables.shapes(72, 104)[0]).astype(np.float64))
    expected = _context_by_definition(tables, outputs, coded)
    assert np.array_equal(tables.with_context(outputs, coded), expected)
    features, mix = tables.context
    first = mix.layers[0]
    padded = np.zeros((3, 3, *first.kernel.shape[2:]))
    padded[1, 1] = first.kernel[0, 0]
    wide = IntegerNetwork((dataclasses.replace(first, kernel=padded), *mix.layers[1:]), mix.thresholds)
    assert not wide.positionwise
    tables.context = (features, wide)
    assert np.array_equal(tables.with_context(outputs, coded), expected)


def test_only_one_stride_1_layer_is_computed_on_a_lattice():
    tables = PhotoTables(load_model_dir("photo-q2").decoder.network)
    with pytest.raises(ValueError, match="one stride-1 convolution"):
        tables.context[1].outputs(np.zeros((4, 4, 320)), (0, 1))
