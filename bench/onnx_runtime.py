"""The shipped digit networks in ONNX Runtime on this CPU, against the numpy runtime: would it be worth a dependency?

The speed issue allows another well-kept inference library beside numpy "only
if it measurably wins". This bench ports the model format's layers to an ONNX
graph (NCHW; the kernels read from the shipped model files), checks the port
against the numpy runtime on the MNIST test set (rounded latents, and 8-bit
pixels decoded from the same latents), then times each network at the
commands' batch with one thread and with a thread per core, in the same run as
the numpy runtime set up as the commands run it (`command_runtime`). A
transposed convolution runs as ONNX's ConvTranspose. Graph optimisations are
all on (ONNX Runtime then runs convolutions in its blocked NCHWc layout).

Needs onnx and onnxruntime, which latentlink itself does not depend on.

    pip install onnx onnxruntime
    python bench/onnx_runtime.py --data ../shared/data/mnist.npz [--models q4 q2 seed-k64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from codec_speed import agreement, images_per_second, matmul_macs_per_second  # bench/codec_speed.py, beside this script
from onnx import TensorProto, helper, numpy_helper

from latentlink.shared.cli_help import CORES, command_runtime
from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import NetworkInfo, tensor_to_array
from latentlink.shared.numpy_runtime import NumpyNetwork, set_threads
from latentlink.shared.proto import model_pb2
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES
from latentlink.train.mnist import load_mnist

REPO = Path(__file__).resolve().parent.parent
_ACTIVATIONS = {
    model_pb2.ACTIVATION_LINEAR: "Identity",
    model_pb2.ACTIVATION_RELU: "Relu",
    model_pb2.ACTIVATION_SIGMOID: "Sigmoid",
    model_pb2.ACTIVATION_TANH: "Tanh",
}
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


class _Graph:
    """An ONNX graph built node by node: each `add` takes the current value and makes the next one."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.value = "x"

    def constant(self, array: np.ndarray) -> str:
        name = f"w{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def add(self, op: str, *inputs: str, **attributes) -> None:
        out = f"v{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, [self.value, *inputs], [out], **attributes))
        self.value = out

    def model(self, name: str) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [self.value], ["y"]))
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            self.weights,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnx_model(info: NetworkInfo, name: str) -> onnx.ModelProto:
    """The network as an ONNX graph on the format's NHWC tensors: images go NCHW between convolutions only."""
    graph, nchw = _Graph(), False
    for layer in info.network.layers:
        kind = layer.WhichOneof("kind")
        spec = getattr(layer, kind)
        if kind in ("reshape", "flatten"):
            if nchw:
                graph.add("Transpose", perm=_TO_NHWC)
            if kind == "flatten":
                graph.add("Flatten")
                nchw = False
                continue
            graph.add("Reshape", graph.constant(np.array([-1, *spec.shape], np.int64)))
            nchw = len(spec.shape) == 3
            if nchw:
                graph.add("Transpose", perm=_TO_NCHW)
            continue
        if kind not in ("dense", "conv2d", "conv2d_transpose") or spec.activation not in _ACTIVATIONS:
            raise SystemExit(f"{name}: {kind} layers are not ported to ONNX here")
        kernel = tensor_to_array(spec.kernel).astype(np.float32)
        weights = [graph.constant(kernel.transpose(3, 2, 0, 1) if kind != "dense" else kernel)]
        weights.append(graph.constant(tensor_to_array(spec.bias).astype(np.float32)))
        if kind == "dense":
            graph.add("Gemm", *weights)
        else:
            kh, kw, stride = kernel.shape[0], kernel.shape[1], spec.stride
            same = spec.padding == model_pb2.PADDING_SAME
            if kind == "conv2d":
                padding = {"auto_pad": "SAME_UPPER"} if same else {}  # TensorFlow's SAME: the extra pixel after
                graph.add("Conv", *weights, kernel_shape=[kh, kw], strides=[stride, stride], **padding)
            else:
                if min(kh, kw) < stride:
                    raise SystemExit(f"{name}: a transposed kernel smaller than its stride is not ported here")
                # SAME crops the full output to input x stride, (k - stride) // 2 from the top left
                crop = [(k - stride) // 2 if same else 0 for k in (kh, kw)]
                ends = [k - stride - c if same else 0 for k, c in zip((kh, kw), crop, strict=True)]
                graph.add("ConvTranspose", *weights, kernel_shape=[kh, kw], strides=[stride, stride], pads=crop + ends)
        graph.add(_ACTIVATIONS[spec.activation])
    if nchw:
        graph.add("Transpose", perm=_TO_NHWC)
    return graph.model(name)


class OnnxNetwork:
    """A model half in an ONNX Runtime session on the CPU, with `threads` threads for each operator."""

    def __init__(self, info: NetworkInfo, name: str, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = onnx_model(info, name).SerializeToString()
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_shape = info.input_shape

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, np.float32).reshape(len(batch), *self.input_shape)
        return self.session.run(None, {"x": x})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--models", nargs="+", default=["q4", "q2", "seed-k64"])
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH_IMAGES)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    peak = matmul_macs_per_second()  # numpy's BLAS on every core, before the commands' settings below
    command_runtime()  # numpy as the commands run it: BLAS on one thread, the runtime on a thread per core
    _, x_test = load_mnist(args.data)
    print(f"ONNX Runtime {ort.__version__}, numpy {np.__version__}, {CORES} cores")
    print("Agreement with the numpy runtime, 10,000 MNIST test images:")
    for name in args.models:
        print(f"- {agreement(name, x_test, lambda info, name=name: OnnxNetwork(info, name, CORES))}")
    print(f"\nfloat32 matmul 2048x2048 (numpy's BLAS, {CORES} threads): {peak / 1e9:.0f} G multiply-adds/s\n")
    print("| model | half | threads | numpy img/s | ONNX Runtime img/s | ONNX Runtime / numpy | numpy % of matmul |")
    print("|---|---|---|---|---|---|---|")
    pixels = x_test.astype(np.float32) / 255.0
    for name in args.models:
        model = load_model_dir(REPO / "models" / name)
        latents = np.round(NumpyNetwork(model.encoder)(pixels.reshape(len(pixels), *model.encoder.input_shape)))
        for half, info, data in (("encoder", model.encoder, pixels), ("decoder", model.decoder, latents)):
            for threads in sorted({1, CORES}):
                set_threads(threads)
                numpy_rate = images_per_second(NumpyNetwork(info), data, args.batch, args.repeats)
                onnx_rate = images_per_second(OnnxNetwork(info, name, threads), data, args.batch, args.repeats)
                share = numpy_rate * info.layer_macs / (peak * threads / CORES)
                print(
                    f"| {name} | {half} | {threads} | {numpy_rate:,.0f} | {onnx_rate:,.0f} | "
                    f"{onnx_rate / numpy_rate:.2f} | {100 * share:.0f}% |",
                    flush=True,
                )
    set_threads(CORES)


if __name__ == "__main__":
    main()
