"""latentlink: a learned image codec that streams autoencoder latents over gRPC.

The library compresses without a network::

    from latentlink import compress, decompress
    data = compress(images)            # uint8 (N, H, W) -> bytes
    restored = decompress(data)        # what a receiver would write

The repository's top-level folders are this package's sub-packages:
`latentlink.sender`, `latentlink.receiver`, `latentlink.shared` (code both
sides run), `latentlink.codec` (the library and the `latentlink` command) and
`latentlink.train`. Importing the package is cheap: the codec loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ContainerError", "UnknownDecoderError", "__version__", "compress", "decompress"]

if TYPE_CHECKING:
    from latentlink.codec.container import ContainerError, UnknownDecoderError
    from latentlink.codec.library import compress, decompress

_LAZY = {
    "compress": "latentlink.codec.library",
    "decompress": "latentlink.codec.library",
    "ContainerError": "latentlink.codec.container",
    "UnknownDecoderError": "latentlink.codec.container",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # looked up when asked: importlib.metadata adds ~35 ms to every process start
        from importlib import metadata

        try:
            return metadata.version("latentlink")
        except metadata.PackageNotFoundError:  # imported from a folder that was never installed
            return "0+unknown"
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentlink' has no attribute {name!r}")
