"""Portable, code-free model files: one `Network` protobuf per autoencoder half.

A half is stored as the deterministic serialisation of a `latentlink.v1.Network`
message and named by the SHA-256 of those bytes. Parsing validates everything
a hostile peer could get wrong (size, digest, canonical encoding, unknown
layer kinds or activations, tensor lengths, shape compatibility) before any
weights are used. Nothing in a model file can make the loader run code.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from latentlink.shared.proto import model_pb2

__all__ = [
    "ANY_SIZE",
    "FORMAT_VERSION",
    "MAX_NETWORK_BYTES",
    "ModelFormatError",
    "NetworkInfo",
    "digest_of",
    "is_any_size",
    "network_to_bytes",
    "parse_network",
    "spatial_output",
    "tensor_from_array",
    "tensor_to_array",
]

FORMAT_VERSION = 1
MAX_NETWORK_BYTES = 16 * 1024 * 1024
MAX_LAYERS = 64
MAX_DIM = 1 << 16
MAX_ELEMENTS = 1 << 22

_DTYPES = {
    model_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    model_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    model_pb2.DTYPE_INT32: np.dtype("<i4"),
}
_ACTIVATIONS = frozenset(
    {
        model_pb2.ACTIVATION_LINEAR,
        model_pb2.ACTIVATION_RELU,
        model_pb2.ACTIVATION_SIGMOID,
        model_pb2.ACTIVATION_TANH,
        model_pb2.ACTIVATION_LEAKY_RELU,
    }
)
_WEIGHTED = frozenset({"dense", "conv2d", "conv2d_transpose"})
_SPATIAL = frozenset({"conv2d", "conv2d_transpose", "affine", "gdn"})  # what an any-size network may use
_PADDINGS = frozenset({model_pb2.PADDING_SAME, model_pb2.PADDING_VALID})


ANY_SIZE = (0, 0)  # height and width of a network's images of any size: its shape is [0, 0, channels]


def is_any_size(shape: tuple[int, ...]) -> bool:
    """Whether an image shape means any size (a photo model's [0, 0, channels], or ANY_SIZE itself)."""
    return tuple(shape[:2]) == ANY_SIZE


class ModelFormatError(ValueError):
    """A model file is malformed, tampered with, or not what was expected."""


@dataclass(frozen=True)
class NetworkInfo:
    """A validated network with its digest and size."""

    network: model_pb2.Network
    digest: str
    size_bytes: int
    activations: int = 0  # per image: the elements of every layer's output, what running it holds in memory
    macs: int = 0  # per image: multiply-adds, its entropy model's (hyperprior, context prior) included
    layer_macs: int = 0  # per image: the layers' multiply-adds alone, what a runtime of the network computes
    # 0 for a network of fixed shape. A network for images of any size counts `activations` and `macs` per
    # block x block input positions: 16 x 16 pixels for an image encoder, one latent position for its decoder.
    block: int = 0

    @property
    def any_size(self) -> bool:
        return self.block > 0

    @functools.cached_property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.network.input_shape)

    @functools.cached_property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.network.output_shape)


def digest_of(data: bytes) -> str:
    """Returns the lowercase hex SHA-256 that names a model file."""
    return hashlib.sha256(data).hexdigest()


def network_to_bytes(network: model_pb2.Network) -> bytes:
    """Serialises a network canonically (deterministic field order)."""
    return network.SerializeToString(deterministic=True)


def without_context(network: model_pb2.Network) -> model_pb2.Network | None:
    """A photo decoder less its checkerboard context (what it was before the context was fitted to it), or
    None if it has none."""
    if not network.hyperprior.context:
        return None
    earlier = model_pb2.Network()
    earlier.CopyFrom(network)
    earlier.hyperprior.ClearField("context")
    earlier.hyperprior.ClearField("context_mix")
    return earlier


def tensor_from_array(array: np.ndarray) -> model_pb2.Tensor:
    """Packs a float32/float64/int32 array as a little-endian tensor."""
    for code, dtype in _DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            data = np.ascontiguousarray(array, dtype=dtype).tobytes()
            return model_pb2.Tensor(dtype=code, shape=array.shape, data=data)
    raise ModelFormatError(f'unsupported tensor dtype "{array.dtype}"')


def tensor_to_array(tensor: model_pb2.Tensor, where: str = "tensor") -> np.ndarray:
    """Unpacks a tensor, checking its dtype, shape and byte length."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ModelFormatError(f"{where}: unknown dtype code {tensor.dtype}")
    shape = tuple(tensor.shape)
    _check_shape(shape, where)
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise ModelFormatError(f"{where}: {len(tensor.data)} data bytes for shape {list(shape)}, expected {expected}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def parse_network(data: bytes, expected_digest: str | None = None, role: int | None = None) -> NetworkInfo:
    """Parses and validates a model file; raises `ModelFormatError` on any defect."""
    if len(data) > MAX_NETWORK_BYTES:
        raise ModelFormatError(f"model file is {len(data)} bytes, over the {MAX_NETWORK_BYTES}-byte limit")
    digest = digest_of(data)
    if expected_digest is not None and digest != expected_digest.lower():
        raise ModelFormatError(f'digest mismatch: expected "{expected_digest}", content hashes to "{digest}"')
    network = model_pb2.Network()
    try:
        network.ParseFromString(data)
    except DecodeError as exc:
        raise ModelFormatError(f"model file is truncated or corrupt: {exc}") from exc
    if network.format_version != FORMAT_VERSION:
        raise ModelFormatError(
            f"model format version {network.format_version} is not supported "
            f"(this build reads version {FORMAT_VERSION})"
        )
    if role is not None and network.role != role:
        raise ModelFormatError(
            f'expected a {model_pb2.Role.Name(role)} file, got "{model_pb2.Role.Name(network.role)}"'
            if network.role in model_pb2.Role.values()
            else f"unknown network role {network.role}"
        )
    activations, macs, layer_macs, block = _check_layers(network)
    if network_to_bytes(network) != data:
        raise ModelFormatError("model file is not in canonical form (unknown or reordered fields)")
    return NetworkInfo(
        network=network,
        digest=digest,
        size_bytes=len(data),
        activations=activations,
        macs=macs,
        layer_macs=layer_macs,
        block=block,
    )


def _check_shape(shape: tuple[int, ...], where: str) -> None:
    if not shape or any(d < 1 or d > MAX_DIM for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ModelFormatError(f"{where}: shape {list(shape)} is empty or out of bounds")


def _check_layers(network: model_pb2.Network) -> tuple[int, int, int, int]:
    """Checks every layer's fit; returns activation elements, multiply-adds (the entropy model's included), the
    layers' own multiply-adds and the block they count for."""
    if len(UnknownFieldSet(network)):
        raise ModelFormatError("network has fields this build does not know")
    if not 1 <= len(network.layers) <= MAX_LAYERS:
        raise ModelFormatError(f"network has {len(network.layers)} layers (1..{MAX_LAYERS} allowed)")
    declared_in, declared_out = tuple(network.input_shape), tuple(network.output_shape)
    any_size = len(declared_in) == 3 and is_any_size(declared_in)
    block = _any_size_block(network) if any_size else 0
    if any_size:
        shape, activations, macs = _walk(network.layers, (block, block, declared_in[2]), "layer", any_size=True)
        produced = (0, 0, shape[2])
    else:
        _check_shape(declared_in, "input shape")
        produced, activations, macs = _walk(network.layers, declared_in, "layer", any_size=False)
    if produced != declared_out:
        raise ModelFormatError(f"layers produce shape {list(produced)}, file declares {list(declared_out)}")
    if network.HasField("entropy_model"):
        _check_entropy_model(network)
    is_decoder = network.role == model_pb2.ROLE_DECODER
    if network.HasField("hyperprior") != (any_size and is_decoder):
        raise ModelFormatError("a decoder of images of any size carries a hyperprior, and only such a decoder")
    if bool(network.hyper_analysis) != (any_size and not is_decoder):
        raise ModelFormatError("an encoder of images of any size carries a hyper-analysis, and only such an encoder")
    if network.hyper_analysis:
        _walk(network.hyper_analysis, (4, 4, declared_out[2]), "hyper-analysis layer", any_size=True)
    layer_macs = macs
    if network.HasField("hyperprior"):
        macs += _check_hyperprior(network.hyperprior, declared_in[2])
    if network.HasField("context_prior"):
        macs += _check_context_prior(network)
    return activations, macs, layer_macs, block


def _any_size_block(network: model_pb2.Network) -> int:
    """The input block one output position of an any-size network stands for: its total downsampling."""
    if network.role == model_pb2.ROLE_DECODER:
        return 1
    block = 1
    for layer in network.layers:
        if layer.WhichOneof("kind") == "conv2d":
            block = min(block * max(1, layer.conv2d.stride), MAX_DIM)
    return block


def _walk(layers, shape: tuple[int, ...], label: str, any_size: bool) -> tuple[tuple[int, ...], int, int]:
    """Checks a chain of layers from `shape`; returns the output shape, activation elements and multiply-adds."""
    if any_size and (len(shape) != 3 or not 1 <= shape[2] <= MAX_DIM):
        raise ModelFormatError(f"an any-size network needs [0, 0, channels] shapes, got {list(shape)}")
    activations, macs = 0, 0
    for index, layer in enumerate(layers):
        where = f"{label} {index}"
        kind = layer.WhichOneof("kind")
        if kind is None or len(UnknownFieldSet(layer)):
            raise ModelFormatError(f"{where}: unknown layer kind")
        if any_size and kind not in _SPATIAL:
            raise ModelFormatError(f"{where}: {kind} layers cannot take images of any size")
        spec, before = getattr(layer, kind), shape
        shape = _output_shape(kind, spec, shape, f"{where} ({kind})")
        activations += math.prod(shape)
        kernel_size = math.prod(spec.kernel.shape) if kind in _WEIGHTED else 0
        # A conv sums its kernel's products at every output position; a transposed conv spreads every
        # input position over its kernel. Dense: one product per weight. GDN: C x C products per position.
        positions = {"conv2d": math.prod(shape[:2]), "conv2d_transpose": math.prod(before[:2])}.get(kind, 1)
        macs += positions * kernel_size + (math.prod(shape[:2]) * shape[2] ** 2 if kind == "gdn" else 0)
    return shape, activations, macs


INTEGER_BOUND = 1 << 20  # every integer-network activation, and its input, is clamped to +-INTEGER_BOUND
MAX_MEAN_FRACTION_BITS = 20  # a hyperprior's means: at most as fine as 2^-20
_EXACT_LIMIT = 1 << 53  # below this, float64 holds every integer exactly


def _check_integer_layers(layers, channels: int, label: str) -> tuple[int, float, int, list[np.ndarray]]:
    """Checks an integer network's layers and exactness bound from `channels` inputs.

    Returns its output channels, its size ratio (output over input), its
    multiply-adds per input position, and each layer's nonzero pattern [in, out].
    """
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ModelFormatError(f"{label}: 1..{MAX_LAYERS} integer layers expected")
    scale, macs, patterns = 1.0, 0, []
    for index, layer in enumerate(layers):
        where = f"{label} layer {index}"
        if len(UnknownFieldSet(layer)) or not 1 <= layer.stride <= 8 or layer.shift > 62:
            raise ModelFormatError(f"{where}: stride outside 1..8, shift over 62, or unknown fields")
        kernel = tensor_to_array(layer.kernel, f"{where} kernel")
        bias = tensor_to_array(layer.bias, f"{where} bias")
        in_axis, out_axis = (3, 2) if layer.transpose else (2, 3)
        if kernel.dtype != np.int32 or bias.dtype != np.int32 or kernel.ndim != 4 or kernel.shape[in_axis] != channels:
            raise ModelFormatError(f"{where}: an int32 kernel for {channels} input channels expected")
        channels = kernel.shape[out_axis]
        if bias.shape != (channels,):
            raise ModelFormatError(f"{where}: bias shape {list(bias.shape)}, expected [{channels}]")
        terms = kernel.shape[0] * kernel.shape[1] * kernel.shape[in_axis]
        largest = int(np.abs(kernel.astype(np.int64)).max())
        bound = terms * largest * INTEGER_BOUND + int(np.abs(bias.astype(np.int64)).max())
        if bound >= _EXACT_LIMIT:
            raise ModelFormatError(f"{where}: sums may reach {bound}, past the exact range 2^53")
        scale = scale * layer.stride if layer.transpose else scale / layer.stride
        macs += terms * channels * (layer.stride**2 if layer.transpose else 1)
        nonzero = np.any(kernel != 0, axis=(0, 1))
        patterns.append(nonzero.T if layer.transpose else nonzero)
    return channels, scale, macs, patterns


def _check_hyperprior(prior: model_pb2.HyperPrior, latent_channels: int) -> int:
    """Checks the integer network's exactness bound and the tables; returns its multiply-adds per y position."""
    if len(UnknownFieldSet(prior)) or not 1 <= prior.side_channels <= 1024:
        raise ModelFormatError("hyperprior: side channels outside 1..1024 or unknown fields")
    if prior.mean_fraction_bits > (MAX_MEAN_FRACTION_BITS if prior.means else 0):
        raise ModelFormatError(
            f"hyperprior: mean fraction bits outside 0..{MAX_MEAN_FRACTION_BITS} (and 0 without means)"
        )
    channels, scale, macs, _ = _check_integer_layers(prior.layers, prior.side_channels, "hyperprior")
    needed = 2 * latent_channels if prior.means else latent_channels
    if channels != needed or scale != 4.0:
        raise ModelFormatError(
            f"hyperprior: the integer network maps z to {channels} channels at {scale}x its size; "
            f"the decoder needs {needed} at 4x"
        )
    levels = _check_thresholds(prior.thresholds, "hyperprior")
    _check_tables(prior.side, prior.side_channels, "hyperprior side tables")
    _check_tables(prior.scales, levels, "hyperprior scale tables")
    return -(-macs // 16) + (_check_checkerboard(prior, latent_channels) if prior.context or prior.context_mix else 0)


def _check_checkerboard(prior: model_pb2.HyperPrior, latent_channels: int) -> int:
    """Checks a hyperprior's checkerboard context; returns its multiply-adds per y position."""
    if not prior.means:
        raise ModelFormatError("hyperprior: a checkerboard context needs means")
    if any(layer.transpose or layer.stride != 1 for layer in (*prior.context, *prior.context_mix)):
        raise ModelFormatError("hyperprior context: only stride-1 convolutions")
    features, _, macs, _ = _check_integer_layers(prior.context, latent_channels, "hyperprior context")
    mix_in = features + 2 * latent_channels
    channels, _, mix_macs, _ = _check_integer_layers(prior.context_mix, mix_in, "hyperprior context mix")
    if channels != 2 * latent_channels:
        raise ModelFormatError(f"hyperprior context mix: {channels} outputs, expected {2 * latent_channels}")
    return macs + mix_macs


def _check_context_prior(network: model_pb2.Network) -> int:
    """Checks a context prior: exact, autoregressive, its tables; returns its multiply-adds per image (decoding)."""
    prior = network.context_prior
    if network.role != model_pb2.ROLE_DECODER or len(network.input_shape) != 1 or network.HasField("entropy_model"):
        raise ModelFormatError("only a decoder of latent vectors without an entropy model may carry a context prior")
    latent = network.input_shape[0]
    if len(UnknownFieldSet(prior)) or not 0 <= prior.fraction_bits <= 20:
        raise ModelFormatError("context prior: fraction bits outside 0..20 or unknown fields")
    bins = prior.mean_bins
    if bins < 1 or bins & (bins - 1) or bins > 1 << prior.fraction_bits:
        raise ModelFormatError("context prior: mean bins must be a power of two, at most 2^fraction_bits")
    for layer in prior.layers:
        if layer.transpose or layer.stride != 1 or tuple(layer.kernel.shape[:2]) != (1, 1):
            raise ModelFormatError("context prior: only 1x1, stride-1 integer layers")
    channels, _, macs, patterns = _check_integer_layers(prior.layers, latent, "context prior")
    if channels != 2 * latent:
        raise ModelFormatError(f"context prior: {channels} outputs, expected a mean and a log-scale per latent")
    reach = np.eye(latent, dtype=bool)  # which inputs each unit depends on
    for pattern in patterns:
        reach = (reach.astype(np.int64) @ pattern.astype(np.int64)) > 0
    outputs = np.concatenate([np.arange(latent), np.arange(latent)])
    if np.any(reach & (np.arange(latent)[:, None] >= outputs[None, :])):
        raise ModelFormatError("context prior: an output depends on its own latent or a later one")
    levels = _check_thresholds(prior.thresholds, "context prior")
    _check_tables(prior.tables, bins * levels, "context prior tables")
    return macs * latent  # decoding runs the network once per latent


def _check_thresholds(thresholds: model_pb2.Tensor, label: str) -> int:
    """Checks ascending int32 thresholds; returns the number of levels they make."""
    array = tensor_to_array(thresholds, f"{label} thresholds")
    if array.dtype != np.int32 or array.ndim != 1 or np.any(np.diff(array.astype(np.int64)) < 0):
        raise ModelFormatError(f"{label} thresholds must be ascending int32")
    return len(array) + 1


MAX_TABLE_WIDTH = 4096


def _check_entropy_model(network: model_pb2.Network) -> None:
    """Checks a vector decoder's integer tables: one row per latent."""
    if network.role != model_pb2.ROLE_DECODER or len(network.input_shape) != 1:
        raise ModelFormatError("only a decoder of latent vectors may carry an entropy model")
    _check_tables(network.entropy_model, network.input_shape[0], "entropy model")


def _check_tables(table: model_pb2.EntropyModel, rows: int, where: str) -> None:
    """Checks integer frequency tables: `rows` rows, each a valid frequency table."""
    if len(UnknownFieldSet(table)) or not 8 <= table.precision <= 24:
        raise ModelFormatError(f"{where}: precision {table.precision} outside 8..24 or unknown fields")
    offsets = tensor_to_array(table.offsets, f"{where} offsets")
    lengths = tensor_to_array(table.lengths, f"{where} lengths")
    pmfs = tensor_to_array(table.pmfs, f"{where} pmfs")
    if any(a.dtype != np.int32 for a in (offsets, lengths, pmfs)):
        raise ModelFormatError(f"{where}: tables must be int32")
    if offsets.shape != (rows,) or lengths.shape != (rows,) or pmfs.ndim != 2 or pmfs.shape[0] != rows:
        raise ModelFormatError(f"{where}: tables do not have one row per latent ({rows})")
    width = pmfs.shape[1]
    if width > MAX_TABLE_WIDTH or lengths.min() < 2 or lengths.max() > width:
        raise ModelFormatError(f"{where}: rows must have 2..{min(width, MAX_TABLE_WIDTH)} entries")
    used = np.arange(width)[None, :] < lengths[:, None]
    if np.any(pmfs[used] < 1) or np.any(pmfs[~used] != 0):
        raise ModelFormatError(f"{where}: frequencies must be >= 1 where used and 0 past each row")
    if np.any(pmfs.sum(axis=1, dtype=np.int64) != 1 << table.precision):
        raise ModelFormatError(f"{where}: rows must sum to 2^{table.precision}")
    if np.abs(offsets.astype(np.int64)).max() > 1 << 20:
        raise ModelFormatError(f"{where}: offsets out of range")


def _output_shape(kind: str, spec, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """Checks one layer against its input shape and returns its output shape."""
    if len(UnknownFieldSet(spec)):
        raise ModelFormatError(f"{where}: fields this build does not know")
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "reshape":
        target = tuple(spec.shape)
        _check_shape(target, where)
        if math.prod(target) != math.prod(shape):
            raise ModelFormatError(f"{where}: cannot reshape {list(shape)} to {list(target)}")
        return target
    if kind == "affine":
        if not (math.isfinite(spec.scale) and math.isfinite(spec.offset)):
            raise ModelFormatError(f"{where}: scale and offset must be finite")
        return shape
    if kind == "gdn":
        return _check_gdn(spec, shape, where)
    if spec.activation not in _ACTIVATIONS:
        raise ModelFormatError(f"{where}: unknown activation code {spec.activation}")
    kernel = tensor_to_array(spec.kernel, f"{where} kernel")
    bias = tensor_to_array(spec.bias, f"{where} bias")
    if kernel.dtype != np.float32 or bias.dtype != np.float32:
        raise ModelFormatError(f"{where}: weights must be float32")
    if kind == "dense":
        if len(shape) != 1 or kernel.ndim != 2 or kernel.shape[0] != shape[0]:
            raise ModelFormatError(f"{where}: kernel {list(kernel.shape)} does not fit input {list(shape)}")
        out_channels = kernel.shape[1]
        result: tuple[int, ...] = (out_channels,)
    else:
        if spec.padding not in _PADDINGS or not 1 <= spec.stride <= 8:
            raise ModelFormatError(f"{where}: bad padding or stride")
        in_axis, out_axis = (2, 3) if kind == "conv2d" else (3, 2)
        if len(shape) != 3 or kernel.ndim != 4 or kernel.shape[in_axis] != shape[2]:
            raise ModelFormatError(f"{where}: kernel {list(kernel.shape)} does not fit input {list(shape)}")
        out_channels = kernel.shape[out_axis]
        same = spec.padding == model_pb2.PADDING_SAME
        result = (*spatial_output(kind, shape[:2], kernel.shape[:2], spec.stride, same), out_channels)
        _check_shape(result, where)
    if bias.shape != (out_channels,):
        raise ModelFormatError(f"{where}: bias shape {list(bias.shape)}, expected [{out_channels}]")
    return result


def _check_gdn(spec: model_pb2.GDN, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    beta = tensor_to_array(spec.beta, f"{where} beta")
    gamma = tensor_to_array(spec.gamma, f"{where} gamma")
    channels = shape[-1]
    if len(shape) != 3 or beta.shape != (channels,) or gamma.shape != (channels, channels):
        raise ModelFormatError(f"{where}: beta [C] and gamma [C, C] must fit {channels} channels")
    if beta.dtype != np.float32 or gamma.dtype != np.float32:
        raise ModelFormatError(f"{where}: weights must be float32")
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(gamma)) and beta.min() > 0 and gamma.min() >= 0):
        raise ModelFormatError(f"{where}: beta must be > 0 and gamma >= 0, all finite")
    return shape


def spatial_output(kind: str, size: tuple[int, ...], kernel: tuple[int, ...], s: int, same: bool) -> tuple[int, int]:
    """Height and width a conv2d or conv2d_transpose layer gives an input of `size`, as Keras and TensorFlow do;
    ModelFormatError when it gives none."""
    if kind == "conv2d":
        out = [-(-n // s) if same else (n - k) // s + 1 for n, k in zip(size, kernel, strict=True)]
    else:
        # as Keras/TensorFlow: a stride wider than the kernel leaves a gap after the last input, too
        out = [n * s if same else n * s + max(k - s, 0) for n, k in zip(size, kernel, strict=True)]
    if min(out) < 1:
        raise ModelFormatError(f"convolution leaves no output for input {list(size)}")
    return out[0], out[1]
