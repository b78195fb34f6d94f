"""Portable, code-free model files: one `Network` protobuf per autoencoder half.

A half is stored as the deterministic serialisation of a `latentlink.v1.Network`
message and named by the SHA-256 of those bytes. Parsing validates everything
a hostile peer could get wrong (size, digest, canonical encoding, unknown
layer kinds or activations, tensor lengths, shape compatibility) before any
weights are used. Nothing in a model file can make the loader run code.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from latentlink.shared.proto import model_pb2

__all__ = [
    "FORMAT_VERSION",
    "MAX_NETWORK_BYTES",
    "ModelFormatError",
    "NetworkInfo",
    "digest_of",
    "network_to_bytes",
    "parse_network",
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
_PADDINGS = frozenset({model_pb2.PADDING_SAME, model_pb2.PADDING_VALID})


class ModelFormatError(ValueError):
    """A model file is malformed, tampered with, or not what was expected."""


@dataclass(frozen=True)
class NetworkInfo:
    """A validated network with its digest and size."""

    network: model_pb2.Network
    digest: str
    size_bytes: int
    activations: int = 0  # per image: the elements of every layer's output, what running it holds in memory
    macs: int = 0  # per image: multiply-adds

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.network.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.network.output_shape)


def digest_of(data: bytes) -> str:
    """Returns the lowercase hex SHA-256 that names a model file."""
    return hashlib.sha256(data).hexdigest()


def network_to_bytes(network: model_pb2.Network) -> bytes:
    """Serialises a network canonically (deterministic field order)."""
    return network.SerializeToString(deterministic=True)


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
    activations, macs = _check_layers(network)
    if network_to_bytes(network) != data:
        raise ModelFormatError("model file is not in canonical form (unknown or reordered fields)")
    return NetworkInfo(network=network, digest=digest, size_bytes=len(data), activations=activations, macs=macs)


def _check_shape(shape: tuple[int, ...], where: str) -> None:
    if not shape or any(d < 1 or d > MAX_DIM for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise ModelFormatError(f"{where}: shape {list(shape)} is empty or out of bounds")


def _check_layers(network: model_pb2.Network) -> tuple[int, int]:
    """Checks every layer's fit; returns the network's activation elements and multiply-adds per image."""
    if len(UnknownFieldSet(network)):
        raise ModelFormatError("network has fields this build does not know")
    if not 1 <= len(network.layers) <= MAX_LAYERS:
        raise ModelFormatError(f"network has {len(network.layers)} layers (1..{MAX_LAYERS} allowed)")
    shape = tuple(network.input_shape)
    _check_shape(shape, "input shape")
    activations, macs = 0, 0
    for index, layer in enumerate(network.layers):
        where = f"layer {index}"
        kind = layer.WhichOneof("kind")
        if kind is None or len(UnknownFieldSet(layer)):
            raise ModelFormatError(f"{where}: unknown layer kind")
        spec, before = getattr(layer, kind), shape
        shape = _output_shape(kind, spec, shape, f"{where} ({kind})")
        activations += math.prod(shape)
        kernel_size = math.prod(spec.kernel.shape) if kind in _WEIGHTED else 0
        # A conv sums its kernel's products at every output position; a transposed conv spreads
        # every input position over its kernel. Dense: one product per weight.
        positions = {"conv2d": math.prod(shape[:2]), "conv2d_transpose": math.prod(before[:2])}.get(kind, 1)
        macs += positions * kernel_size
    if shape != tuple(network.output_shape):
        raise ModelFormatError(f"layers produce shape {list(shape)}, file declares {list(network.output_shape)}")
    if network.HasField("entropy_model"):
        _check_entropy_model(network)
    return activations, macs


MAX_TABLE_WIDTH = 4096


def _check_entropy_model(network: model_pb2.Network) -> None:
    """Checks the integer tables: one row per latent, each a valid frequency table."""
    table = network.entropy_model
    if network.role != model_pb2.ROLE_DECODER or len(network.input_shape) != 1:
        raise ModelFormatError("only a decoder of latent vectors may carry an entropy model")
    if len(UnknownFieldSet(table)) or not 8 <= table.precision <= 24:
        raise ModelFormatError(f"entropy model: precision {table.precision} outside 8..24 or unknown fields")
    offsets = tensor_to_array(table.offsets, "entropy model offsets")
    lengths = tensor_to_array(table.lengths, "entropy model lengths")
    pmfs = tensor_to_array(table.pmfs, "entropy model pmfs")
    latent = network.input_shape[0]
    if any(a.dtype != np.int32 for a in (offsets, lengths, pmfs)):
        raise ModelFormatError("entropy model tables must be int32")
    if offsets.shape != (latent,) or lengths.shape != (latent,) or pmfs.ndim != 2 or pmfs.shape[0] != latent:
        raise ModelFormatError(f"entropy model tables do not have one row per latent ({latent})")
    width = pmfs.shape[1]
    if width > MAX_TABLE_WIDTH or lengths.min() < 2 or lengths.max() > width:
        raise ModelFormatError(f"entropy model rows must have 2..{min(width, MAX_TABLE_WIDTH)} entries")
    used = np.arange(width)[None, :] < lengths[:, None]
    if np.any(pmfs[used] < 1) or np.any(pmfs[~used] != 0):
        raise ModelFormatError("entropy model frequencies must be >= 1 where used and 0 past each row")
    if np.any(pmfs.sum(axis=1, dtype=np.int64) != 1 << table.precision):
        raise ModelFormatError(f"entropy model rows must sum to 2^{table.precision}")
    if np.abs(offsets.astype(np.int64)).max() > 1 << 20:
        raise ModelFormatError("entropy model offsets out of range")


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
        result = (*_spatial(kind, spec, shape[:2], kernel.shape[:2]), out_channels)
        _check_shape(result, where)
    if bias.shape != (out_channels,):
        raise ModelFormatError(f"{where}: bias shape {list(bias.shape)}, expected [{out_channels}]")
    return result


def _spatial(kind: str, spec, size: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[int, int]:
    same = spec.padding == model_pb2.PADDING_SAME
    s = spec.stride
    if kind == "conv2d":
        out = [-(-n // s) if same else (n - k) // s + 1 for n, k in zip(size, kernel, strict=True)]
    else:
        out = [n * s if same else (n - 1) * s + k for n, k in zip(size, kernel, strict=True)]
    if min(out) < 1:
        raise ModelFormatError(f"convolution leaves no output for input {list(size)}")
    return out[0], out[1]
