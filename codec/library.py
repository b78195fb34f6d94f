"""compress and decompress: the codec without a network, producing exactly what a receiver writes."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from latentlink.codec.container import (
    Container,
    ContainerError,
    UnknownDecoderError,
    pack_container,
    unpack_container,
)
from latentlink.shared.model_choice import looks_like_digits
from latentlink.shared.model_dir import (
    DECODER_FILE,
    ModelFiles,
    load_model_dir,
    quality_model_dir,
    shipped_model_dirs,
)
from latentlink.shared.model_format import NetworkInfo, digest_of, network_to_bytes, parse_network, without_context
from latentlink.shared.photo_codec import CodedImage, image_shape
from latentlink.shared.proto import model_pb2
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, MAX_BATCH_PIXELS
from latentlink.shared.serde import (
    LatentCodecError,
    coding_tables,
    latents_from_batch,
    latents_to_batch,
    photo_batches,
    supported_encodings,
)

__all__ = ["compress", "decompress", "decompress_named", "find_decoder", "read_model"]

ModelLike = str | PathLike | ModelFiles | None
ImagesLike = np.ndarray | Sequence[np.ndarray]


def compress(
    images: ImagesLike,
    quality: int | None = None,
    model: ModelLike = None,
    *,
    names: Sequence[str] | None = None,
    device: str = "auto",
    effort: int = 0,
) -> bytes:
    """Compresses uint8 images into a self-describing container.

    `images`: an (N, H, W) array, or a list of images, each (H, W) grey or
    (H, W, 3) colour, of any sizes. By default 28x28 grey digits take the
    MNIST ladder (`quality` 1..5, default 4) and anything else the photo
    ladder (`quality` 1..3, default 2); `model` is any model folder instead.
    `names` (default image_000000.png, ...) are kept in the container for
    `latentlink decompress`. `effort` (0-2) searches each image's latents for
    a better rate-distortion trade under the same decoder (digit models:
    sender/search.py, ~10 ms per image; photo models: sender/photo_search.py,
    seconds per image on a CPU, with TensorFlow). Raises
    ValueError for images the model cannot take.
    """
    if quality is not None and model is not None:
        raise ValueError("give quality or model, not both")
    images = list(images) if not isinstance(images, np.ndarray) or images.ndim != 2 else [images]
    if model is None:
        model = quality_model_dir(quality, photos=not looks_like_digits(images))
    files = read_model(model)
    names = list(names) if names is not None else [f"image_{i:06d}.png" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    encoder = _encoder(files, device)
    encoding = supported_encodings(encoder.tables)[0]
    if files.encoder.any_size:
        batches = _photo_batches(encoder, files, images, names, effort)
        container = Container(files.decoder.digest, files.name, files.image_shape, encoding, tuple(batches))
        return pack_container(container)
    pixels = _as_image_stack(images, files.image_shape)
    batches = []
    for first in range(0, len(pixels), DEFAULT_BATCH_IMAGES):  # the batches a sender would send
        chunk = slice(first, first + DEFAULT_BATCH_IMAGES)
        latents = encoder.encode(pixels[chunk], effort)
        batches.append(
            latents_to_batch(
                files.decoder.digest, encoding, first, names[chunk], files.image_shape, latents, encoder.tables
            )
        )
    container = Container(files.decoder.digest, files.name, files.image_shape, encoding, tuple(batches))
    return pack_container(container)


def _photo_batches(encoder, files: ModelFiles, images: list[np.ndarray], names: list[str], effort: int) -> list:
    """Codes images of any size one by one, in the batches a sender would send."""
    coded = []
    for index, (name, image) in enumerate(zip(names, images, strict=True)):
        image = np.asarray(image)
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"image {index} is {image.dtype}{list(image.shape)}; (H, W) or (H, W, 3) uint8 expected")
        if image.shape[0] * image.shape[1] > MAX_BATCH_PIXELS or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index} is {image.shape[1]}x{image.shape[0]}: 1 to {MAX_BATCH_PIXELS} pixels")
        latents, data = encoder.encode_photo(image, effort)
        coded.append(CodedImage(name, image_shape(image), latents, data))
    return list(photo_batches(files.decoder.digest, coded, files.latent_dim))


def decompress(data: bytes, model: ModelLike = None, *, device: str = "auto") -> np.ndarray | list[np.ndarray]:
    """Decodes a container to uint8 images: pixel for pixel what a receiver writes.

    Images of one shape come as one array (N, H, W) or (N, H, W, 3); images of
    different shapes (a photo model's) as a list of arrays.

    The decoder is found by the digest the container names, among the shipped
    models or in `model` (a model folder or a decoder .lln file). Raises
    ContainerError (a ValueError) for corrupt or truncated data and
    UnknownDecoderError when no such decoder is available.
    """
    return decompress_named(data, model, device=device)[1]


def decompress_named(
    data: bytes, model: ModelLike = None, *, device: str = "auto"
) -> tuple[list[str], np.ndarray | list[np.ndarray]]:
    """Like `decompress`, and also returns the images' names."""
    from latentlink.shared.network_runtime import decode_images, decode_photo

    container = unpack_container(data)
    decoder = find_decoder(container.decoder_digest, model)
    if decoder.output_shape != container.image_shape:
        raise ContainerError(
            f"decoder makes {list(decoder.output_shape)} images, the container holds {list(container.image_shape)}"
        )
    network = _decoder_network(decoder, device)
    tables = coding_tables(decoder.network)
    names: list[str] = []
    images: list[np.ndarray] = []
    for batch in container.batches:
        try:
            decoded = latents_from_batch(batch, decoder.input_shape[-1], tables)
        except LatentCodecError as exc:
            raise ContainerError(f"batch at image {batch.first_seq}: {exc}") from None
        names += decoded.names
        if decoded.shapes:
            images += [decode_photo(network, *pair) for pair in zip(decoded.latents, decoded.shapes, strict=True)]
            continue
        if not np.all(np.isfinite(decoded.latents)):
            raise ContainerError(f"batch at image {batch.first_seq} has non-finite latents")
        images += list(decode_images(network, decoded.latents))
    if not images:
        return names, np.zeros((0, *container.image_shape), np.uint8)
    return names, np.stack(images) if len({image.shape for image in images}) == 1 else images


def read_model(model: str | PathLike | ModelFiles) -> ModelFiles:
    """Returns a model's validated files (a folder path, or files already read)."""
    return model if isinstance(model, ModelFiles) else load_model_dir(Path(model))


def find_decoder(digest: str, model: ModelLike = None) -> NetworkInfo:
    """Finds the decoder with this digest: in `model` (folder or .lln file) if given, else among the shipped models."""
    if model is None:
        candidates = [folder / DECODER_FILE for folder in shipped_model_dirs()]
    elif isinstance(model, ModelFiles):
        candidates = [model.decoder]
    else:
        path = Path(model)
        candidates = [path / DECODER_FILE if path.is_dir() else path]
    infos = []
    for candidate in candidates:
        info = candidate if isinstance(candidate, NetworkInfo) else _decoder_file(candidate)
        if info.digest == digest:
            return info
        infos.append(info)
    for info in infos:  # a file from before a photo model's checkerboard context: the same decoder without it
        earlier = without_context(info.network)
        if earlier is not None and digest_of(data := network_to_bytes(earlier)) == digest:
            return parse_network(data, digest, model_pb2.ROLE_DECODER)
    where = "the shipped models" if model is None else f'"{model}"'
    raise UnknownDecoderError(f"decoder {digest[:12]}... is not among {where}; give its model with --model")


def _decoder_file(path: Path) -> NetworkInfo:
    try:
        stat = path.stat()
    except OSError as exc:
        raise UnknownDecoderError(f"cannot read decoder {path}: {exc.strerror}") from None
    return _parsed_decoder(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _parsed_decoder(path: Path, mtime_ns: int, size: int) -> NetworkInfo:  # keyed on the file's version
    try:
        return parse_network(path.read_bytes(), role=model_pb2.ROLE_DECODER)
    except OSError as exc:
        raise UnknownDecoderError(f"cannot read decoder {path}: {exc.strerror}") from None


# Building the networks takes a second or two: calls with the same model reuse them.
_networks: dict[tuple[str, ...], object] = {}
_networks_lock = threading.Lock()


def _encoder(files: ModelFiles, device: str):
    from latentlink.sender.encode import BatchEncoder

    key = ("encoder", files.encoder.digest, files.decoder.digest, device)
    with _networks_lock:
        if key not in _networks:
            _networks[key] = BatchEncoder(files, device)
        return _networks[key]


def _decoder_network(decoder: NetworkInfo, device: str):
    from latentlink.shared.network_runtime import load_network

    key = ("decoder", decoder.digest, device)
    with _networks_lock:
        if key not in _networks:
            # An encoder built for compress() has this decoder already: building it again costs a second.
            built = [v for k, v in _networks.items() if k[0] == "encoder" and k[2:] == (decoder.digest, device)]
            _networks[key] = built[0].decoder_network if built else load_network(decoder, device)
        return _networks[key]


def _as_image_stack(images: ImagesLike, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(images, np.ndarray):
        stack = images[None] if images.ndim == 2 else images
    else:
        stack = [np.asarray(image) for image in images]
        for index, image in enumerate(stack):
            if image.shape != tuple(shape):
                raise ValueError(f"image {index} is {list(image.shape)}; the model takes {list(shape)} images")
        stack = np.stack(stack) if stack else np.zeros((0, *shape), np.uint8)
    if stack.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), not {stack.dtype}")
    if stack.ndim != 3 or stack.shape[1:] != tuple(shape):
        raise ValueError(f"images of shape {list(stack.shape)}; the model takes (N, {shape[0]}, {shape[1]})")
    return np.ascontiguousarray(stack)
