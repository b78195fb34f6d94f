"""The shipped digit networks on a GPU through PyTorch, checked against the numpy runtime: images/s at large batches.

latentlink's GPU path is TensorFlow (`sender --device gpu`), but the GPU
machines lent to this project have PyTorch and no TensorFlow. So this bench
ports the model format's layers to PyTorch, with the kernels read from the
shipped model files, and first checks the port against the numpy runtime on
the MNIST test set: rounded latents, and 8-bit pixels decoded from the same
latents. It then times each network on the GPU in float32, with TF32 off,
at each batch size: on the device alone, and with the copies a sender or a
receiver makes (uint8 images in, latents out; latents in, uint8 pixels out).
It also prints the GPU's float32 matrix product rate as a yardstick. These are
the networks' own GPU figures in PyTorch, not TensorFlow's.
bench/io_workers.py and bench/throughput.py measure the stages that would
feed a GPU sender.

Needs PyTorch, which latentlink itself does not depend on.

    python bench/gpu_networks.py --data mnist.npz [--models seed-k64 q4] [--batches 512 8192 65536]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from codec_speed import agreement  # bench/codec_speed.py, beside this script

from latentlink.shared.model_dir import load_model_dir
from latentlink.shared.model_format import NetworkInfo, tensor_to_array
from latentlink.shared.numpy_runtime import same_padding
from latentlink.shared.proto import model_pb2
from latentlink.train.mnist import load_mnist

REPO = Path(__file__).resolve().parent.parent
Tensor = torch.Tensor

_ACTIVATIONS: dict[int, Callable[[Tensor], Tensor]] = {
    model_pb2.ACTIVATION_LINEAR: lambda x: x,
    model_pb2.ACTIVATION_RELU: torch.relu,
    model_pb2.ACTIVATION_SIGMOID: torch.sigmoid,
    model_pb2.ACTIVATION_TANH: torch.tanh,
    model_pb2.ACTIVATION_LEAKY_RELU: lambda x: F.leaky_relu(x, 0.2),
}


def _weight(tensor: model_pb2.Tensor, device: torch.device) -> Tensor:
    return torch.from_numpy(tensor_to_array(tensor).astype(np.float32)).to(device)


def _conv(spec, device: torch.device) -> Callable[[Tensor], Tensor]:
    """Conv2D on NHWC tensors, TensorFlow's padding (SAME pads the extra pixel after)."""
    kernel = _weight(spec.kernel, device).permute(3, 2, 0, 1).contiguous()  # [out, in, kh, kw]
    bias, stride, activation = _weight(spec.bias, device), spec.stride, _ACTIVATIONS[spec.activation]
    kh, kw = kernel.shape[2:]
    same = spec.padding == model_pb2.PADDING_SAME

    def run(x: Tensor) -> Tensor:
        x = x.permute(0, 3, 1, 2)
        if same:
            (_, top, bottom), (_, left, right) = (
                same_padding(x.shape[2], kh, stride),
                same_padding(x.shape[3], kw, stride),
            )
            x = F.pad(x, (left, right, top, bottom))
        return activation(F.conv2d(x, kernel, bias, stride).permute(0, 2, 3, 1))

    return run


def _conv_transpose(spec, device: torch.device) -> Callable[[Tensor], Tensor]:
    """Conv2DTranspose on NHWC tensors: the full transposed convolution, cropped as TensorFlow's SAME does."""
    kernel = _weight(spec.kernel, device).permute(3, 2, 0, 1).contiguous()  # [kh, kw, out, in] -> [in, out, kh, kw]
    bias, stride, activation = _weight(spec.bias, device), spec.stride, _ACTIVATIONS[spec.activation]
    kh, kw = kernel.shape[2:]
    same = spec.padding == model_pb2.PADDING_SAME

    def run(x: Tensor) -> Tensor:
        h, w = x.shape[1:3]
        out = F.conv_transpose2d(x.permute(0, 3, 1, 2), kernel, bias, stride)
        if same:
            top, left = max(kh - stride, 0) // 2, max(kw - stride, 0) // 2
            out = out[:, :, top : top + h * stride, left : left + w * stride]
        return activation(out.permute(0, 2, 3, 1))

    return run


def _layer(layer: model_pb2.Layer, device: torch.device) -> Callable[[Tensor], Tensor]:
    kind = layer.WhichOneof("kind")
    spec = getattr(layer, kind)
    if kind == "reshape":
        return lambda x: x.reshape(len(x), *spec.shape)
    if kind == "flatten":
        return lambda x: x.reshape(len(x), -1)
    if kind == "affine":
        return lambda x: x * spec.scale + spec.offset
    if kind == "gdn":
        beta, gamma = _weight(spec.beta, device), _weight(spec.gamma, device)
        return lambda x: (
            x * torch.sqrt(x.square() @ gamma + beta) if spec.inverse else x / torch.sqrt(x.square() @ gamma + beta)
        )
    if kind == "dense":
        kernel, bias, activation = (
            _weight(spec.kernel, device),
            _weight(spec.bias, device),
            _ACTIVATIONS[spec.activation],
        )
        return lambda x: activation(x @ kernel + bias)
    return (_conv if kind == "conv2d" else _conv_transpose)(spec, device)


class TorchNetwork:
    """A validated model half (fixed-size digits) run with PyTorch on `device`, NHWC like the format."""

    def __init__(self, info: NetworkInfo, device: torch.device) -> None:
        self.input_shape = info.input_shape
        self.layers = [_layer(layer, device) for layer in info.network.layers]

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), *self.input_shape)
        for layer in self.layers:
            x = layer(x)
        return x


def _on(device: torch.device) -> Callable[[NetworkInfo], Callable[[np.ndarray], np.ndarray]]:
    """A model half ported to PyTorch on `device`, taking and giving numpy arrays (for `agreement`)."""
    return lambda info: lambda x: TorchNetwork(info, device)(torch.from_numpy(x).to(device)).cpu().numpy()


def _best_seconds(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    def timed() -> float:
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()  # warm-up: kernels chosen, memory allocated
    return min(timed() for _ in range(repeats))


def matmul_macs_per_second(device: torch.device, size: int = 8192, repeats: int = 5) -> float:
    """Multiply-adds per second of a large float32 matrix product (TF32 off): the yardstick."""
    a = torch.randn(size, size, device=device)
    return size**3 / _best_seconds(lambda: a @ a, device, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="mnist.npz (default: $LATENTLINK_MNIST)")
    parser.add_argument("--models", nargs="+", default=["seed-k64", "q4"])
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 8192, 65536])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda", help="cpu: only to check the port where no GPU is")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # each batch shape's fastest kernels, chosen once (TensorFlow autotunes too)
    device = torch.device(args.device)
    _, x_test = load_mnist(args.data)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, PyTorch {torch.__version__}")
    print("Agreement with the numpy runtime, 10,000 MNIST test images:")
    for name in args.models:
        print(f"- {agreement(name, x_test, _on(device))}")
    peak = matmul_macs_per_second(device)
    print(f"\nfloat32 matmul 8192x8192 (TF32 off): {peak / 1e12:.1f} T multiply-adds/s\n")
    print("| model | half | M MACs/image | batch | img/s on the device | % of its matmul | img/s with host copies |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for name in args.models:
        model = load_model_dir(REPO / "models" / name)
        encoder, decoder = TorchNetwork(model.encoder, device), TorchNetwork(model.decoder, device)
        for batch in args.batches:
            pixels = x_test[rng.integers(0, len(x_test), batch)]
            for half, macs, alone, copied in _cases(encoder, decoder, model, pixels, device):
                rate = batch / _best_seconds(alone, device, args.repeats)
                with_copies = batch / _best_seconds(copied, device, args.repeats)
                print(
                    f"| {name} | {half} | {macs / 1e6:.2f} | {batch:,} | {rate:,.0f} | "
                    f"{100 * rate * macs / peak:.1f}% | {with_copies:,.0f} |",
                    flush=True,
                )


def _cases(encoder: TorchNetwork, decoder: TorchNetwork, model, pixels: np.ndarray, device: torch.device) -> list:
    """(half, multiply-adds per image, the network alone on the device, the network with its host copies)."""

    def host(tensor: Tensor) -> Tensor:  # pinned where there is a GPU: copies run at full speed
        return tensor.pin_memory() if device.type == "cuda" else tensor

    host_pixels = host(torch.from_numpy(pixels))
    on_device = host_pixels.to(device).float() / 255.0
    latents = torch.round(encoder(on_device))
    host_latents = host(latents.cpu())

    def encode_copied() -> Tensor:  # uint8 pixels in, latents out
        return encoder(host_pixels.to(device, non_blocking=True).float() / 255.0).cpu()

    def decode_copied() -> Tensor:  # latents in, uint8 pixels out
        pixels = decoder(host_latents.to(device, non_blocking=True)) * 255.0
        return pixels.round_().clamp_(0, 255).to(torch.uint8).cpu()

    return [
        ("encoder", model.encoder.layer_macs, lambda: encoder(on_device), encode_copied),
        ("decoder", model.decoder.layer_macs, lambda: decoder(latents), decode_copied),
    ]


if __name__ == "__main__":
    main()
