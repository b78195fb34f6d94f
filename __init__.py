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

from importlib import metadata
from typing import TYPE_CHECKING, Any

__all__ = ["ContainerError", "UnknownDecoderError", "__version__", "compress", "decompress"]

try:
    __version__ = metadata.version("latentlink")
except metadata.PackageNotFoundError:  # imported from a folder that was never installed
    __version__ = "0+unknown"

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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentlink' has no attribute {name!r}")
