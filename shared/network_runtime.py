"""Runs one model half: on the CPU with LiteRT's XNNPACK kernels (shared/litert_runtime.py) or numpy
(shared/numpy_runtime.py: networks of any size, GDN), with TensorFlow on a GPU.

TensorFlow is imported only for a GPU: `--device gpu`, or `auto` on a machine
that shows one. The CPU path never imports it (it takes ~1.5 s and ~400 MB).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_format import NetworkInfo
from latentlink.shared.numpy_runtime import NumpyNetwork, as_batch
from latentlink.shared.protocol import DECODE_BUDGET_ELEMENTS
from latentlink.shared.tf_import import tensorflow

if TYPE_CHECKING:
    from latentlink.shared.litert_runtime import LiteNetwork

__all__ = [
    "CPU",
    "DEVICES",
    "CompiledNetwork",
    "Network",
    "decode_images",
    "decode_photo",
    "gpu_present",
    "load_network",
    "preload_cpu_runtime",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "gpu")
CPU = "cpu"
log = logging.getLogger(__name__)
_told: set[str] = set()  # what a fallback (auto's to the CPU, LiteRT's to numpy) has already said, once per reason


def gpu_present() -> bool:
    """Whether the machine shows an NVIDIA GPU, found without importing TensorFlow."""
    return Path("/dev/nvidia0").exists() or any(Path("/proc/driver/nvidia/gpus").glob("*"))


def _warn_once(reason: str, message: str) -> None:
    """Logs `message` % `reason` the first time this process falls back for that reason."""
    if reason not in _told:
        _told.add(reason)
        log.warning(message, reason)


def resolve_device(device: str) -> str:
    """Maps auto/cpu/gpu to "cpu" (LiteRT or numpy) or a TensorFlow GPU name.

    'gpu' raises RuntimeError when TensorFlow cannot be imported or sees no GPU; 'auto' then runs on the CPU.
    """
    if device not in DEVICES:
        raise ValueError(f'unknown device "{device}" (choose from {", ".join(DEVICES)})')
    if device == CPU or (device == "auto" and not gpu_present()):
        return CPU
    try:
        gpus = tensorflow().config.list_logical_devices("GPU")
    except ImportError as exc:  # TensorFlow absent, or its GPU build broken: the CPU runtimes still work
        reason = f"TensorFlow could not be imported ({exc})"
        if device == "gpu":
            raise RuntimeError(f"--device gpu needs TensorFlow: {reason} (use --device cpu or auto)") from None
        _warn_once(reason, "this machine shows a GPU, but %s: running on the CPU")
        return CPU
    if device == "gpu" and not gpus:
        raise RuntimeError("--device gpu was asked for, but TensorFlow sees no GPU (use --device cpu or auto)")
    return gpus[0].name if gpus else CPU


def preload_cpu_runtime() -> None:
    """Imports and starts the LiteRT runtime now (~25 ms holding the GIL), so that a receiver idle between start-up
    and its first session does not spend it while a sender waits."""
    litert = _litert_runtime()
    if litert is not None:
        litert.start()


def _litert_runtime():
    """The LiteRT runtime's module, or None (said once) where LiteRT cannot be imported: numpy runs everything."""
    try:
        from latentlink.shared import litert_runtime
    except ImportError as exc:
        reason = f"LiteRT could not be imported ({exc})"
        _warn_once(reason, "%s: the networks run on numpy, more slowly")
        return None
    return litert_runtime


def load_network(info: NetworkInfo, device: str = "auto", hyper: bool = False) -> Network:
    """A model half ready to run (`hyper`: an encoder's hyper-analysis): on the CPU with LiteRT where it can
    express the network, else numpy; on a GPU with TensorFlow."""
    resolved = resolve_device(device)
    if resolved != CPU:
        return CompiledNetwork(info, resolved, hyper)
    litert = _litert_runtime()
    if litert is not None:
        try:
            return litert.LiteNetwork(info, hyper)
        except litert.Unsupported:
            pass
    return NumpyNetwork(info, hyper)


class CompiledNetwork:
    """A model half compiled once by TensorFlow into a graph that takes any batch size without retracing."""

    def __init__(self, info: NetworkInfo, device: str = "auto", hyper: bool = False) -> None:
        tf = tensorflow()
        from latentlink.shared.keras_bridge import hyper_analysis_from_network, keras_from_network

        self.info = info
        gpus = tf.config.list_logical_devices("GPU")
        self.device = gpus[0].name if device != CPU and gpus else "/CPU:0"  # a name here: the caller chose
        with tf.device(self.device):
            self.model = hyper_analysis_from_network(info) if hyper else keras_from_network(info)
        shape = info.output_shape if hyper else info.input_shape
        self.input_shape = shape
        spec = tf.TensorSpec([None, *(d or None for d in shape)], tf.float32)  # 0: any height/width
        # Traced once, here, for every batch size: calls never retrace, even from several threads at once.
        self.function = tf.function(self._forward, input_signature=[spec])
        self._run = self.function.get_concrete_function()

    def _forward(self, batch):
        with tensorflow().device(self.device):
            return self.model(batch, training=False)

    def warm_up(self) -> None:
        """Nothing: the graph was traced when built."""

    def __call__(self, batch: np.ndarray, finish: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """Runs a float32 batch of shape (n, *input_shape) through the network (`finish`: then applied to it)."""
        out = self._run(tensorflow().constant(as_batch(batch, self.input_shape))).numpy()
        return out if finish is None else finish(out)


Network = Union["LiteNetwork", NumpyNetwork, CompiledNetwork]


def decode_images(decoder: Network, latents: np.ndarray) -> np.ndarray:
    """Decodes a batch of latents to the uint8 images a receiver writes (the one place that does).

    A batch whose activations would pass DECODE_BUDGET_ELEMENTS is decoded in
    slices, so that memory stays bounded whatever decoder a sender brought.
    """
    latents = np.asarray(latents, np.float32)
    step = max(1, DECODE_BUDGET_ELEMENTS // max(1, decoder.info.activations))
    if len(latents) <= step:
        return decoder(latents, finish=to_uint8)
    return np.concatenate([decoder(latents[i : i + step], finish=to_uint8) for i in range(0, len(latents), step)])


def decode_photo(decoder: Network, latents, shape: tuple[int, int, int]) -> np.ndarray:
    """Decodes one image of any size from its PhotoLatents to the uint8 image a receiver writes (the one place)."""
    from latentlink.shared.photo_codec import to_image

    return to_image(decoder(latents.synthesis_input[None].astype(np.float32))[0], *shape)
