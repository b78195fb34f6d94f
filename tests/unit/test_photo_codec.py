"""The photo codec's pieces: export, exact integer hyper-synthesis, bitstreams of any size, hostile files and shapes."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest

from latentlink.shared.integer_network import conv2d_same, conv2d_transpose_same
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import (
    ModelFormatError,
    digest_of,
    network_to_bytes,
    parse_network,
    tensor_from_array,
    without_context,
)
from latentlink.shared.photo_codec import (
    PhotoDecoder,
    PhotoEncoder,
    PhotoLatents,
    PhotoTables,
    latent_sizes,
    pad_image,
    to_image,
)
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.proto import model_pb2
from latentlink.shared.serde import LatentCodecError, latents_from_batch
from latentlink.train.photo_export import scale_tables, write_photo_model
from latentlink.train.photo_model import build_photo_model
from latentlink.train.photo_training import PhotoConfig
from tests.conftest import outputs_under_thread_counts

SIZES = [(1, 1, 3), (17, 300, 3), (333, 517, 1), (64, 64, 3)]


def _image(shape, seed=0) -> np.ndarray:
    h, w, c = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    base = (127 + 100 * np.sin(x / 9.0) * np.cos(y / 7.0))[:, :, None] + rng.normal(0, 8, (h, w, c))
    image = np.clip(base, 0, 255).astype(np.uint8)
    return image[:, :, 0] if c == 1 else image


@pytest.mark.parametrize("shape", SIZES)
def test_any_size_round_trips_in_shape_and_mode(tiny, shape):
    encoder, decoder = PhotoEncoder(tiny.encoder, tiny.decoder, "cpu"), PhotoDecoder(tiny.decoder)
    image = _image(shape)
    latents, data = encoder.encode(image)
    again_latents, again = encoder.encode(image)
    assert data == again  # deterministic
    (yh, yw), (zh, zw) = latent_sizes(*shape[:2])
    assert latents.y.shape == (yh, yw, 8) and latents.z.shape == (zh, zw, 4)
    decoded_latents, pixels = decoder.decode(data, *shape)
    np.testing.assert_array_equal(decoded_latents.y, latents.y)
    np.testing.assert_array_equal(decoded_latents.z, latents.z)
    assert pixels.shape == image.shape and pixels.dtype == np.uint8


def test_a_mean_scale_decoder_adds_the_mean_it_predicts_from_z(tiny):
    """What is coded is y less its mean, rounded; the synthesis gets it back with the exact integer mean."""
    from latentlink.shared.network_runtime import load_network

    assert tiny.decoder.network.hyperprior.means and tiny.decoder.network.hyperprior.mean_fraction_bits == 10
    encoder, decoder = PhotoEncoder(tiny.encoder, tiny.decoder, "cpu"), PhotoDecoder(tiny.decoder)
    image = _image((70, 90, 3))
    latents, data = encoder.encode(image)
    y = encoder.analysis(pad_image(image, 3)[None])[0]
    _, mean = decoder.tables.read(decoder.tables.predict(latents.z))
    assert np.any(mean != 0) and np.all(mean * 1024 == np.round(mean * 1024))  # 10 fractional bits, exactly
    np.testing.assert_array_equal(latents.y, np.round(y - mean))
    decoded_latents, pixels = decoder.decode(data, 70, 90, 3)
    np.testing.assert_array_equal(decoded_latents.mean, mean)
    synthesis = load_network(tiny.decoder, "cpu")
    with_mean = to_image(synthesis((latents.y + mean)[None].astype(np.float32))[0], 70, 90, 3)
    without = to_image(synthesis(latents.y[None].astype(np.float32))[0], 70, 90, 3)
    np.testing.assert_array_equal(pixels, with_mean)
    assert not np.array_equal(pixels, without)


@pytest.mark.parametrize("shape", [(1, 1, 3), (40, 70, 1)])
def test_a_scale_only_model_still_round_trips(tiny_scale_only, shape):
    assert not tiny_scale_only.decoder.network.hyperprior.means
    encoder, decoder = (
        PhotoEncoder(tiny_scale_only.encoder, tiny_scale_only.decoder, "cpu"),
        PhotoDecoder(tiny_scale_only.decoder),
    )
    image = _image(shape)
    latents, data = encoder.encode(image)
    y = encoder.analysis(pad_image(image, 3)[None])[0]
    np.testing.assert_array_equal(latents.y, np.round(y))
    decoded_latents, pixels = decoder.decode(data, *shape)
    assert decoded_latents.mean is None and latents.mean is None
    np.testing.assert_array_equal(decoded_latents.y, latents.y)
    assert pixels.shape == image.shape


def test_exported_means_follow_the_trained_hyper_synthesis(tiny_folder):
    """The integer hyper-synthesis's means are the float network's, within its quantisation."""
    import keras

    from latentlink.train.photo_export import load_photo_model

    tiny = load_model_dir(tiny_folder)
    model = build_photo_model(8, 8, 8, 4)
    load_photo_model(model, tiny)
    z = np.random.default_rng(5).integers(-4, 5, (3, 5, 4))
    float_mean = keras.ops.convert_to_numpy(model.hyper_synthesis(z[None].astype(np.float32)))[0, ..., 8:]
    tables = PhotoTables(tiny.decoder.network)
    _, mean = tables.read(tables.predict(z))
    np.testing.assert_allclose(mean, float_mean, atol=0.02)


def _start(model, start, config: PhotoConfig, source: str, folder) -> None:
    """Starts `model` from `start` as --init does, through a checkpoint or a model folder (then `start` too is
    read back from the folder, so that both hold the same rounded integer hyper-synthesis)."""
    from latentlink.train.photo_export import load_photo_model
    from latentlink.train.photo_training import load_checkpoint, save_checkpoint

    if source == "checkpoint":
        save_checkpoint(start, folder / "start.npz")
        load_checkpoint(model, folder / "start.npz")
    else:
        files = write_photo_model(start, config, {}, folder / "start", "start", "test")
        load_photo_model(start, files)
        load_photo_model(model, files)
        model.z_prior.set_weights(start.z_prior.get_weights())  # the folder holds z's prior as tables only


@pytest.mark.parametrize("source", ["checkpoint", "model folder"])
def test_a_scale_only_model_starts_a_mean_scale_model_as_itself(tmp_path, source):
    """Fine-tuning a scale-only model (a checkpoint, or shipped files) into a mean-scale one: same scales,
    means of zero, to begin with."""
    import keras

    keras.utils.set_random_seed(4)
    scale_only = build_photo_model(8, 8, 8, 4, means=False)
    mean_scale = build_photo_model(8, 8, 8, 4)
    _start(mean_scale, scale_only, PhotoConfig(means=False), source, tmp_path)
    z = np.random.default_rng(6).integers(-4, 5, (1, 3, 5, 4)).astype(np.float32)
    (scale, zero), (expected, _) = mean_scale.scale_and_mean(z), scale_only.scale_and_mean(z)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(scale), keras.ops.convert_to_numpy(expected))
    assert not np.any(keras.ops.convert_to_numpy(zero))


def _coded(model, image: np.ndarray) -> tuple[np.ndarray, float]:
    """What a model decodes from an image, and the bits it codes it in (rounded latents, as exported)."""
    import keras

    from latentlink.train.gaussian_rate import gaussian_bits

    ops = keras.ops
    y = model.analysis(image[None])
    z = ops.round(model.hyper_analysis(y))
    scale, mean = model.scale_and_mean(z)
    q = ops.round(y - mean)
    bits = ops.sum(gaussian_bits(q, scale)) + ops.sum(model.z_prior.bits(ops.reshape(z, (-1, z.shape[-1]))))
    return ops.convert_to_numpy(model.synthesis(q + mean))[0], float(bits)


@pytest.mark.parametrize("source", ["checkpoint", "model folder"])
def test_a_narrower_model_grows_into_a_wider_one_that_starts_as_itself(tmp_path, source):
    """--init with a narrower model (N, M and hyper channels; scale-only too): the wider model decodes the same
    image in the same bits to begin with, and its new channels have weights to learn."""
    import keras

    keras.utils.set_random_seed(4)
    narrow = build_photo_model(8, 8, 4, 4, means=False)
    wide = build_photo_model(12, 16, 8, 4)
    _start(wide, narrow, PhotoConfig(8, 8, 4, 4, means=False), source, tmp_path)
    image = _image((64, 128, 3), seed=5).astype(np.float32) / 255.0
    (pixels, bits), (expected_pixels, expected_bits) = _coded(wide, image), _coded(narrow, image)
    np.testing.assert_allclose(pixels, expected_pixels, atol=1e-3)  # GDN's new cross-terms: gamma 1e-5
    assert bits == pytest.approx(expected_bits, rel=1e-3)
    analysis = wide.analysis.get_weights()
    assert np.any(analysis[-2][..., 8:]) and not np.any(analysis[-2][:, :, 8:, :8])  # new in, nothing out
    assert not np.any(keras.ops.convert_to_numpy(wide.scale_and_mean(np.ones((1, 2, 2, 4), np.float32))[1]))


@pytest.mark.parametrize(
    ("narrow", "wide"),
    [((12, 8, 8, 4), (8, 8, 8, 4)), ((8, 8, 8, 4), (8, 8, 8, 2)), ((8, 8, 8, 4, True), (8, 8, 8, 4, False))],
    ids=["narrower N", "other z channels", "means into scale-only"],
)
def test_a_model_that_cannot_grow_into_another_is_refused(tmp_path, narrow, wide):
    from latentlink.train.photo_training import load_checkpoint, save_checkpoint

    save_checkpoint(build_photo_model(*narrow), tmp_path / "from.npz")
    with pytest.raises(ValueError):
        load_checkpoint(build_photo_model(*wide), tmp_path / "from.npz")


def test_exported_files_are_canonical_and_bounded(tiny):
    assert tiny.encoder.any_size and tiny.decoder.any_size
    assert tiny.encoder.block == 16 and tiny.decoder.block == 1
    assert tiny.decoder.input_shape == (0, 0, 8) and tiny.decoder.output_shape == (0, 0, 3)
    assert parse_network(network_to_bytes(tiny.decoder.network)).digest == tiny.decoder.digest
    assert tiny.decoder.macs > 0 and tiny.decoder.activations > 0


@pytest.mark.parametrize(("kernel", "stride", "size"), [(5, 2, (5, 7)), (3, 1, (4, 9)), (5, 2, (1, 1))])
def test_integer_convolutions_match_tensorflow(kernel, stride, size):
    """Integer inputs and weights small enough that float32 TensorFlow is exact too: the two must agree."""
    import keras

    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.integers(-8, 9, (1, *size, 3)).astype(np.float32)
    conv = keras.layers.Conv2D(4, kernel, strides=stride, padding="same", use_bias=False)
    deconv = keras.layers.Conv2DTranspose(4, kernel, strides=stride, padding="same", use_bias=False)
    for layer, ours in ((conv, conv2d_same), (deconv, conv2d_transpose_same)):
        layer.build(x.shape)
        weights = rng.integers(-8, 9, layer.kernel.shape).astype(np.float32)
        layer.set_weights([weights])
        expected = np.asarray(layer(x))[0]
        np.testing.assert_array_equal(ours(x[0].astype(np.float64), weights.astype(np.float64), stride), expected)


def test_tables_are_identical_when_computed_twice(tiny):
    first, second = scale_tables(), scale_tables()
    for name in ("offsets", "lengths", "pmfs"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert network_to_bytes(parse_network(network_to_bytes(tiny.decoder.network)).network) == network_to_bytes(
        tiny.decoder.network
    )


_ROWS_SCRIPT = """
import hashlib, sys
import numpy as np
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.photo_codec import PhotoTables
tables = PhotoTables(load_model_dir(sys.argv[1]).decoder.network)
z = np.random.default_rng(7).integers(-6, 7, (9, 13, tables.side_channels))
print(hashlib.sha256(tables.network.outputs(z).tobytes()).hexdigest())
"""


def test_hyper_synthesis_is_the_same_under_any_thread_count(tiny_folder):
    """BLAS splits sums differently across threads; the integer network must not care."""
    assert len(outputs_under_thread_counts(_ROWS_SCRIPT, str(tiny_folder))) == 1


def test_an_integer_network_that_could_leave_the_exact_range_is_refused(tiny):
    network = model_pb2.Network()
    network.CopyFrom(tiny.decoder.network)
    layer = network.hyperprior.layers[0]
    kernel = np.full(tuple(layer.kernel.shape), 2**30, np.int32)
    layer.kernel.CopyFrom(tensor_from_array(kernel))
    with pytest.raises(ModelFormatError, match="exact range"):
        parse_network(network_to_bytes(network))


def _without_means(network: model_pb2.Network) -> None:
    """A mean-scale decoder that says it is scale-only: its network's outputs no longer fit."""
    network.hyperprior.means, network.hyperprior.mean_fraction_bits = False, 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n.layers[1].gdn.beta.CopyFrom(tensor_from_array(-np.ones(8, np.float32))), "beta must be > 0"),
        (lambda n: n.ClearField("hyperprior"), "carries a hyperprior"),
        (lambda n: n.layers.add().flatten.SetInParent(), "cannot take images of any size"),
        (lambda n: n.hyperprior.thresholds.CopyFrom(tensor_from_array(np.array([3, 1], np.int32))), "ascending"),
        (_without_means, "maps z to 16 channels.*needs 8"),
        (lambda n: setattr(n.hyperprior, "mean_fraction_bits", 21), "mean fraction bits"),
    ],
)
def test_malformed_photo_decoders_are_refused(tiny, edit, message):
    network = model_pb2.Network()
    network.CopyFrom(tiny.decoder.network)
    edit(network)
    with pytest.raises(ModelFormatError, match=message):
        parse_network(network_to_bytes(network))


def test_mean_fraction_bits_without_means_are_refused(tiny_scale_only):
    network = model_pb2.Network()
    network.CopyFrom(tiny_scale_only.decoder.network)
    network.hyperprior.mean_fraction_bits = 10
    with pytest.raises(ModelFormatError, match="0 without means"):
        parse_network(network_to_bytes(network))


def _batch(tiny, shapes, sizes=None, payload=b"") -> pb.LatentBatch:
    return pb.LatentBatch(
        encoding=pb.LATENT_ENCODING_HYPERPRIOR,
        latent_dim=8,
        count=len(sizes) if sizes is not None else len(shapes),
        names=zlib.compress("\0".join(f"i{k}" for k in range(len(sizes or shapes))).encode()),
        shapes=[pb.ImageShape(height=h, width=w, channels=c) for h, w, c in shapes],
        sizes=sizes if sizes is not None else [0] * len(shapes),
        payload=payload,
    )


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([(0, 5, 3)], "not 1..65536 pixels"),
        ([(70000, 5, 3)], "not 1..65536 pixels"),
        ([(5, 5, 2)], "1 or 3 channels"),
        ([(60000, 60000, 3)], "at most"),
        ([(5, 5, 3), (5, 5, 3)], "2 image shapes for 3 images"),
    ],
)
def test_hostile_shapes_are_refused_before_decoding(tiny, shapes, message):
    tables = PhotoTables(tiny.decoder.network)
    sizes = [0, 0, 0] if len(shapes) == 2 else None
    with pytest.raises(LatentCodecError, match=message):
        latents_from_batch(_batch(tiny, shapes, sizes), 8, tables)


def test_shapes_that_do_not_fit_the_bitstream_fail_the_batch(tiny):
    encoder = PhotoEncoder(tiny.encoder, tiny.decoder, "cpu")
    _, data = encoder.encode(_image((64, 64, 3)))
    tables = PhotoTables(tiny.decoder.network)
    with pytest.raises(LatentCodecError):
        latents_from_batch(_batch(tiny, [(256, 256, 3)], [len(data)], data), 8, tables)


@pytest.mark.parametrize("context", [True, False])
def test_golden_photo_bitstream(context):
    """Seeded integer latents coded with the shipped photo-q1 decoder, with its checkerboard context and without
    (its hyperprior alone, as before the context): these exact bytes, and these exact means (float64) added
    back, on any machine."""
    model = load_model_dir("photo-q1")
    assert model.decoder.digest == GOLDEN_DECODER, "photo-q1 changed: pin its golden bitstreams again"
    network = model.decoder.network
    if not context:
        network = without_context(network)
        assert digest_of(network_to_bytes(network)) == GOLDEN_PLAIN_DECODER  # the ladder's seventh-session q1
    tables = PhotoTables(network)
    z_shape, y_shape = tables.shapes(100, 150)
    rng = np.random.default_rng(2026)
    latents = PhotoLatents(rng.integers(-3, 4, z_shape), np.round(rng.laplace(0, 1.5, y_shape)).astype(np.int64))
    data = tables.encode(latents, 100, 150)
    decoded = tables.decode(data, 100, 150)
    np.testing.assert_array_equal(decoded.y, latents.y)
    bitstream, means = GOLDEN_CONTEXT if context else GOLDEN_PLAIN
    assert hashlib.sha256(data).hexdigest() == bitstream, f"{len(data)} bytes; decoder {model.decoder.digest}"
    assert hashlib.sha256(decoded.mean.tobytes()).hexdigest() == means  # what the synthesis adds


GOLDEN_DECODER = "c53e6704ee074022b3cafa8c8fd33c6b2f685e07e6e502f4db245f35d667686c"
GOLDEN_PLAIN_DECODER = "324f06a344b36406e05f6b6f7fa3179504f1a03c487613dd1a340ea3e8ba6d3f"
GOLDEN_PLAIN = (
    "c931fe89139b71b4e5d06c33ee5f6608d0036380e78ed43cac11c67ea4815fc1",
    "fc08996ee4d5115ccfb7eaf362932f15f66b1f4815a4bc4a870d5f34360e56f8",
)
GOLDEN_CONTEXT = (
    "d883f3744bddde712c15a3cdb62e15f1c68e6af43ede7e0b3ffd0e1a22b02871",
    "c82aa533e09d8f14fcd0a9eecabf377846348960cd0382004a9912c239198df6",
)


def test_an_exported_model_loads_back_for_further_training(tiny, tiny_folder, tmp_path):
    from latentlink.train.photo_export import load_photo_model

    model = build_photo_model(8, 8, 8, 4)
    load_photo_model(model, tiny)
    again = write_photo_model(model, PhotoConfig(channels=8, latent=8, hyper=8, side=4), {}, tmp_path, "tiny", "x")
    for ours, theirs in ((again.encoder.network, tiny.encoder.network), (again.decoder.network, tiny.decoder.network)):
        for a, b in zip(_tensors(ours), _tensors(theirs), strict=True):  # GDN's squares: to the last bit or two
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    assert again.decoder.network.hyperprior.layers == tiny.decoder.network.hyperprior.layers


def _tensors(network: model_pb2.Network) -> list[np.ndarray]:
    from latentlink.shared.model_format import tensor_to_array

    found = []
    for layer in [*network.layers, *network.hyper_analysis]:
        spec = getattr(layer, layer.WhichOneof("kind"))
        found += [tensor_to_array(getattr(spec, f.name)) for f, _ in spec.ListFields() if f.message_type is not None]
    return found
