"""Runs a fixed-size model half on the CPU with LiteRT's XNNPACK kernels (the digit models' CPU path).

XNNPACK computes a convolution as an indirect matrix product straight from its
input (no gathered patches), with the bias and the activation applied while the
outputs are in registers, and a transposed convolution phase by phase written
straight into place: the fused kernels numpy has no way to express. On 2 cores
the `q4` digit decoder runs ~1.4x, its encoder ~1.5x and the seed model's
halves 2.2-2.5x the numpy runtime's images/s (bench/RESULTS.md).

The network is written as a LiteRT flatbuffer of builtin operators from the
validated portable format (nothing in a model file becomes code), built here
without TensorFlow. XNNPACK computes each image alone: the same floats in any
batch, at any position, on any number of threads (tests/unit/test_litert_runtime.py),
so a resumed session is pixel-identical to a clean one. Networks of any size and
those with GDN or affine layers (the photo models) run on the numpy runtime.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from latentlink.shared.model_format import NetworkInfo, spatial_output, tensor_to_array
from latentlink.shared.numpy_runtime import as_batch, thread_count
from latentlink.shared.proto import model_pb2
from latentlink.shared.silence import descriptor_2_silenced

__all__ = ["LiteNetwork", "Unsupported", "start"]

Array = np.ndarray
# float32 elements of the largest intermediate one call holds (2 MB): images go through in chunks whose layers stay
# in cache (q4's decoder: ~26,000 images/s in chunks of 32 against 17,000-21,000 in one of 512, on 2 cores).
_CHUNK_ELEMENTS = 1 << 19
_FUSED = {
    model_pb2.ACTIVATION_LINEAR: schema.ActivationFunctionType.NONE,
    model_pb2.ACTIVATION_RELU: schema.ActivationFunctionType.RELU,
}
_SEPARATE = {
    model_pb2.ACTIVATION_SIGMOID: schema.BuiltinOperator.LOGISTIC,
    model_pb2.ACTIVATION_TANH: schema.BuiltinOperator.TANH,
    model_pb2.ACTIVATION_LEAKY_RELU: schema.BuiltinOperator.LEAKY_RELU,
}
_PADDING = {model_pb2.PADDING_SAME: schema.Padding.SAME, model_pb2.PADDING_VALID: schema.Padding.VALID}
# Interpreters kept idle per chunk size for the next call: a receiver decodes each session on a thread of its own,
# and each interpreter holds its activations (~5 MB for q4's decoder): more calls at once get interpreters made
# for them, which are dropped afterwards.
_IDLE_INTERPRETERS = 2
_banner_lock = threading.Lock()
_banner_shown = False


class Unsupported(ValueError):
    """A network this runtime does not run (any size, GDN, affine): the numpy runtime does."""


class _Builder:
    """Collects one subgraph's tensors, constant buffers and operators, and writes them as a LiteRT flatbuffer."""

    def __init__(self) -> None:
        self.model = schema.ModelT()
        self.model.version, self.model.buffers, self.model.operatorCodes = 3, [schema.BufferT()], []
        self.graph = schema.SubGraphT()
        self.graph.tensors, self.graph.operators = [], []
        self.largest = 0  # elements of the largest tensor that is not a constant
        self._codes: dict[int, int] = {}

    def tensor(self, shape: tuple[int, ...], data: Array | None = None) -> int:
        """A float32 tensor (an int32 one when `data` is int32), constant when `data` is given; its index."""
        tensor = schema.TensorT()
        tensor.shape, tensor.name, tensor.buffer = list(shape), f"t{len(self.graph.tensors)}", 0
        tensor.type = (
            schema.TensorType.INT32 if data is not None and data.dtype == np.int32 else schema.TensorType.FLOAT32
        )
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.ascontiguousarray(data).view(np.uint8).ravel()
            self.model.buffers.append(buffer)
            tensor.buffer = len(self.model.buffers) - 1
        else:
            self.largest = max(self.largest, math.prod(shape))
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def operator(self, code: int, inputs: list[int], shape: tuple[int, ...], options=None, kind: int = 0) -> int:
        """Adds an operator of builtin `code` and returns its output, a new tensor of `shape`."""
        if code not in self._codes:
            entry = schema.OperatorCodeT()
            entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
            self.model.operatorCodes.append(entry)
            self._codes[code] = len(self.model.operatorCodes) - 1
        output = self.tensor(shape)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self._codes[code], inputs, [output]
        op.builtinOptionsType, op.builtinOptions = kind, options
        self.graph.operators.append(op)
        return output

    def finish(self) -> bytes:
        self.model.subgraphs = [self.graph]
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _options(kind: type, **fields):
    options = kind()
    for name, value in fields.items():
        setattr(options, name, value)
    return options


def _weighted(graph: _Builder, x: int, shape: tuple[int, ...], kind: str, spec) -> tuple[int, tuple[int, ...]]:
    """One dense, conv2d or conv2d_transpose layer with its activation: (output tensor, its shape)."""
    ops, option_kinds = schema.BuiltinOperator, schema.BuiltinOptions
    kernel = tensor_to_array(spec.kernel).astype(np.float32)
    bias = tensor_to_array(spec.bias).astype(np.float32)
    fused = _FUSED.get(spec.activation, schema.ActivationFunctionType.NONE)
    rows = shape[0]
    if kind == "dense":
        out_shape = (rows, kernel.shape[1])
        weights, biases = graph.tensor(kernel.T.shape, kernel.T), graph.tensor(bias.shape, bias)
        options = _options(schema.FullyConnectedOptionsT, fusedActivationFunction=fused)
        x = graph.operator(
            ops.FULLY_CONNECTED, [x, weights, biases], out_shape, options, option_kinds.FullyConnectedOptions
        )
    else:
        same = spec.padding == model_pb2.PADDING_SAME
        size = spatial_output(kind, shape[1:3], kernel.shape[:2], spec.stride, same)
        strides = {"strideH": spec.stride, "strideW": spec.stride, "padding": _PADDING[spec.padding]}
        if kind == "conv2d_transpose":  # kernel [kh, kw, out, in] -> [out, kh, kw, in]
            out_shape = (rows, *size, kernel.shape[2])
            weights = kernel.transpose(2, 0, 1, 3)
            inputs = [graph.tensor((4,), np.array(out_shape, np.int32)), graph.tensor(weights.shape, weights), x]
            options = _options(schema.TransposeConvOptionsT, fusedActivationFunction=fused, **strides)
            x = graph.operator(
                ops.TRANSPOSE_CONV,
                [*inputs, graph.tensor(bias.shape, bias)],
                out_shape,
                options,
                option_kinds.TransposeConvOptions,
            )
        else:  # kernel [kh, kw, in, out]
            channels = kernel.shape[2]
            if kernel.shape[3] == 1:
                # One output channel: XNNPACK's convolution kernels work on blocks of 8-16 outputs, so one output
                # costs as much as a block (22 µs per digit for q4's last layer); a depthwise convolution, then a
                # dense product summing the channels, takes 10.
                taps = kernel.transpose(3, 0, 1, 2)  # [1, kh, kw, in]: each channel's own 3x3
                options = _options(
                    schema.DepthwiseConv2DOptionsT,
                    depthMultiplier=1,
                    fusedActivationFunction=schema.ActivationFunctionType.NONE,
                    **strides,
                )
                inputs = [x, graph.tensor(taps.shape, taps), graph.tensor((channels,), np.zeros(channels, np.float32))]
                x = graph.operator(
                    ops.DEPTHWISE_CONV_2D, inputs, (rows, *size, channels), options, option_kinds.DepthwiseConv2DOptions
                )
                ones, out_shape = np.ones((1, channels), np.float32), (rows, *size, 1)
                options = _options(schema.FullyConnectedOptionsT, fusedActivationFunction=fused, keepNumDims=True)
                inputs = [x, graph.tensor(ones.shape, ones), graph.tensor(bias.shape, bias)]
                x = graph.operator(ops.FULLY_CONNECTED, inputs, out_shape, options, option_kinds.FullyConnectedOptions)
            else:
                out_shape = (rows, *size, kernel.shape[3])
                weights = kernel.transpose(3, 0, 1, 2)  # [out, kh, kw, in]
                inputs = [x, graph.tensor(weights.shape, weights), graph.tensor(bias.shape, bias)]
                options = _options(schema.Conv2DOptionsT, fusedActivationFunction=fused, **strides)
                x = graph.operator(ops.CONV_2D, inputs, out_shape, options, option_kinds.Conv2DOptions)
    if spec.activation in _SEPARATE:
        options, option_kind = None, 0
        if spec.activation == model_pb2.ACTIVATION_LEAKY_RELU:
            options, option_kind = _options(schema.LeakyReluOptionsT, alpha=0.2), option_kinds.LeakyReluOptions
        x = graph.operator(_SEPARATE[spec.activation], [x], out_shape, options, option_kind)
    return x, out_shape


def network_flatbuffer(info: NetworkInfo, rows: int) -> bytes:
    """The network as a LiteRT model for batches of `rows` images; Unsupported for what it cannot express."""
    return _graph(info, rows).finish()


def _graph(info: NetworkInfo, rows: int) -> _Builder:
    if info.any_size:
        raise Unsupported("a network for images of any size")
    graph = _Builder()
    shape = (rows, *info.input_shape)
    first = x = graph.tensor(shape)
    for layer in info.network.layers:
        kind = layer.WhichOneof("kind")
        spec = getattr(layer, kind)
        if kind in ("reshape", "flatten"):
            target = (rows, *spec.shape) if kind == "reshape" else (rows, math.prod(shape[1:]))
            options = _options(schema.ReshapeOptionsT, newShape=list(target))
            inputs = [x, graph.tensor((len(target),), np.array(target, np.int32))]
            x = graph.operator(
                schema.BuiltinOperator.RESHAPE, inputs, target, options, schema.BuiltinOptions.ReshapeOptions
            )
            shape = target
        elif kind in ("dense", "conv2d", "conv2d_transpose"):
            x, shape = _weighted(graph, x, shape, kind, spec)
        else:
            raise Unsupported(f"a {kind} layer")
    graph.graph.inputs, graph.graph.outputs = [first], [x]
    return graph


def _quiet_first_allocation(interpreter: Interpreter) -> None:
    """Allocates an interpreter's tensors; the first time in this process with descriptor 2 silenced, for LiteRT
    prints a line ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") that nothing can turn off."""
    global _banner_shown
    with _banner_lock:
        if _banner_shown:
            interpreter.allocate_tensors()
            return
        with descriptor_2_silenced():
            interpreter.allocate_tensors()
        _banner_shown = True


def start() -> None:
    """Starts LiteRT once with a network of one product (its XNNPACK delegate, and the line it prints kept quiet),
    so that a server does it before its first session rather than while other threads may be writing."""
    graph = _Builder()
    x = graph.tensor((1, 1))
    one = np.ones((1, 1), np.float32)
    inputs = [x, graph.tensor(one.shape, one), graph.tensor((1,), one[0])]
    y = graph.operator(schema.BuiltinOperator.FULLY_CONNECTED, inputs, (1, 1))
    graph.graph.inputs, graph.graph.outputs = [x], [y]
    _quiet_first_allocation(Interpreter(model_content=graph.finish(), num_threads=1))


class LiteNetwork:
    """A validated fixed-size model half run by LiteRT (see the module docstring); Unsupported on construction for
    a network it cannot express.

    A call runs its batch in chunks of `rows` images and a remainder in chunks of powers of two, each size on an
    interpreter of its own, which one call at a time uses (calls on several threads take one each; a few stay
    built for the next calls).
    """

    device = "cpu"

    def __init__(self, info: NetworkInfo, hyper: bool = False) -> None:
        if hyper:
            raise Unsupported("a hyper-analysis (photo models)")
        self.info = info
        self.input_shape = info.input_shape
        graph = _graph(info, 1)  # raises Unsupported for a network it cannot express
        self.rows = 1 << max(0, (_CHUNK_ELEMENTS // graph.largest).bit_length() - 1)  # a power of two
        self._models: dict[int, bytes] = {1: graph.finish()}
        self._idle: dict[tuple[int, int], list[tuple[Interpreter, int, int]]] = {}
        self._lock = threading.Lock()
        try:  # what LiteRT cannot prepare, whatever the reason, runs on numpy
            _quiet_first_allocation(Interpreter(model_content=self._models[1], num_threads=1))
        except (RuntimeError, ValueError) as exc:
            raise Unsupported(f"LiteRT cannot prepare it ({exc})") from None

    def __call__(self, batch: np.ndarray, finish: Callable[[Array], Array] | None = None) -> np.ndarray:
        """Runs a float32 batch of shape (n, *input_shape) through the network.

        `finish`: applied to each chunk's outputs as it comes (the receiver's rounding to 8-bit pixels).
        """
        batch = np.ascontiguousarray(as_batch(batch, self.input_shape))
        outputs, start = [], 0
        while start < len(batch):
            rows = min(self.rows, 1 << ((len(batch) - start).bit_length() - 1))
            out = self._run(batch[start : start + rows])
            outputs.append(out if finish is None else finish(out))
            start += rows
        if not outputs:
            out = np.zeros((0, *self.info.output_shape), np.float32)
            return out if finish is None else finish(out)
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def warm_up(self) -> None:
        """Builds an interpreter for full chunks and runs it once on zeros."""
        self._run(np.zeros((self.rows, *self.input_shape), np.float32))

    def _run(self, chunk: Array) -> Array:
        key = len(chunk), thread_count()
        with self._lock:
            idle = self._idle.get(key)
            found = idle.pop() if idle else None
        interpreter, first, last = found or self._interpreter(*key)
        interpreter.set_tensor(first, chunk)
        interpreter.invoke()
        out = interpreter.get_tensor(last)
        with self._lock:  # not reached if it failed: a failed interpreter is not used again
            idle = self._idle.setdefault(key, [])
            if len(idle) < _IDLE_INTERPRETERS:
                idle.append((interpreter, first, last))
        return out

    def _interpreter(self, rows: int, threads: int) -> tuple[Interpreter, int, int]:
        """A new interpreter for chunks of `rows` images on `threads` threads, with its input and output tensors'
        indices."""
        if rows not in self._models:
            self._models[rows] = network_flatbuffer(self.info, rows)
        interpreter = Interpreter(model_content=self._models[rows], num_threads=threads)
        _quiet_first_allocation(interpreter)
        return interpreter, interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
