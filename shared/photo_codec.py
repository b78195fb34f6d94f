"""Codes images of any size with a hyperprior model: image <-> (z, y) <-> one bitstream per image.

An image of height h and width w (1 or 3 channels) is padded, by repeating its
edge pixels, to a multiple of 64 each way; grey images go through a colour
model as three equal channels and come back as the rounded mean. Its latents
are y (h'/16 x w'/16 x M) and z (h'/64 x w'/64 x Z), rounded to integers (for
a mean-scale model, y less the mean the integer hyper-synthesis predicts from z
is what is rounded, and the decoder adds the mean back). The bitstream is one
ANS stream: z coded with the per-channel tables, then y, each element with the
scale-table row the integer hyper-synthesis picks from z. With a checkerboard
context (He et al. 2021), y's anchors (row + column even) come first, and an
integer network refines every other element's row and mean from them; the
encoder rounds (or searches) the anchors, then the rest. The receiver needs
only the bitstream and (h, w, channels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import constriction
import numpy as np

from latentlink.shared.entropy_coding import BitstreamError, EntropyTables, ans_coder
from latentlink.shared.integer_network import IntegerNetwork
from latentlink.shared.model_format import NetworkInfo
from latentlink.shared.proto import model_pb2
from latentlink.shared.protocol import MAX_BATCH_IMAGES

__all__ = [
    "PAD",
    "anchors",
    "CodedImage",
    "image_shape",
    "PhotoBatcher",
    "PhotoDecoder",
    "PhotoEncoder",
    "PhotoLatents",
    "PhotoTables",
    "Search",
    "latent_sizes",
    "pad_image",
    "to_image",
]

# A sender-side search: (image, padded input, continuous y less its means, table rows, means or None, the
# elements it must leave as they are or None) -> the integer y to code.
Search = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray]

PAD = 64  # the models' total downsampling of z: images are padded to a multiple of it


def image_shape(image: np.ndarray) -> tuple[int, int, int]:
    """(height, width, channels) of a grey (h, w) or colour (h, w, 3) image."""
    return image.shape[0], image.shape[1], image.shape[2] if image.ndim == 3 else 1


def latent_sizes(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (height, width) of y and of z for an image of this size."""
    zh, zw = -(-height // PAD), -(-width // PAD)
    return (4 * zh, 4 * zw), (zh, zw)


def pad_image(image: np.ndarray, channels: int) -> np.ndarray:
    """An (h, w) or (h, w, c) uint8 image as float32 in [0, 1], edge-padded to a multiple of PAD, `channels` deep."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] != channels:
        image = np.repeat(image[:, :, :1], channels, axis=2)
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, -h % PAD), (0, -w % PAD), (0, 0)), mode="edge")
    return padded.astype(np.float32) / 255.0


def to_image(decoded: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Crops a decoded (h', w', c) float image to uint8 (height, width) for grey or (height, width, 3) for colour."""
    from latentlink.shared.metrics import to_uint8

    pixels = to_uint8(decoded[:height, :width])
    if channels == 1:
        return np.round(pixels.mean(axis=2)).astype(np.uint8) if pixels.shape[2] > 1 else pixels[:, :, 0]
    return pixels


@dataclass(frozen=True)
class PhotoLatents:
    """The coded latents of one image: z then y, integers held as int64, and y's predicted means, if any."""

    z: np.ndarray  # (zh, zw, Z)
    y: np.ndarray  # (yh, yw, M): what is coded (for a mean-scale model, y less its mean, rounded)
    mean: np.ndarray | None = field(default=None, compare=False)  # (yh, yw, M) float64, from z (and any anchors)

    @property
    def synthesis_input(self) -> np.ndarray:
        """What the decoder's synthesis transform gets: the coded y plus its mean (float64, exact)."""
        return self.y if self.mean is None else self.y + self.mean

    @functools.cached_property
    def vector(self) -> np.ndarray:
        """The logical latents as one float64 vector (z, then y, row-major): what image keys and checksums hash."""
        return np.concatenate([self.z.ravel(), self.y.ravel()]).astype(np.float64)


class PhotoTables:
    """A hyperprior decoder's exact coding machinery: tables for z and y, the integer hyper-synthesis and any
    checkerboard context."""

    def __init__(self, decoder: model_pb2.Network) -> None:
        prior = decoder.hyperprior
        self.side = EntropyTables.from_proto(prior.side)
        self.scales = EntropyTables.from_proto(prior.scales)
        self.network = IntegerNetwork.from_proto(prior)
        self.context = None  # or the checkerboard's two integer networks: anchors -> features, then the mix
        if prior.context:
            self.context = (
                IntegerNetwork.from_proto(prior, prior.context),
                IntegerNetwork.from_proto(prior, prior.context_mix),
            )
        self.means, self.mean_fraction_bits = prior.means, prior.mean_fraction_bits
        self.side_channels = prior.side_channels
        self.latent_channels = decoder.input_shape[-1]

    def shapes(self, height: int, width: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The shapes of z and y for an image of this size."""
        (yh, yw), (zh, zw) = latent_sizes(height, width)
        return (zh, zw, self.side_channels), (yh, yw, self.latent_channels)

    def predict(self, z: np.ndarray) -> np.ndarray:
        """The integer hyper-synthesis's outputs for rounded z (float64 holding integers): per element of y its
        log-scale, then, for a mean-scale model, its mean (see `read`)."""
        return self.network.outputs(z)

    def with_context(self, outputs: np.ndarray, coded: np.ndarray) -> np.ndarray:
        """The hyper-synthesis's `outputs` with the checkerboard context's added at every position that is not
        an anchor, from the anchors of `coded` (y's integers; the others are not read). Without a context:
        `outputs` as they are."""
        if self.context is None:
            return outputs
        features, mix = self.context
        coded = coded * anchors(coded.shape) * float(1 << self.mean_fraction_bits)
        if len(features.layers) > 1 or not mix.positionwise:
            added = mix.outputs(np.concatenate([features.outputs(coded), outputs], axis=-1))
            return np.where(anchors(outputs.shape), outputs, outputs + added)
        # The shipped shape (one feature layer, a 1x1 mix): only the positions that are not anchors, two lattices
        # of every other row and column, are computed, half the work for the same integers.
        result = outputs.copy()
        for lattice in ((0, 1), (1, 0)):
            here = (slice(lattice[0], None, 2), slice(lattice[1], None, 2))
            mixed = mix.outputs(np.concatenate([features.outputs(coded, lattice), outputs[here]], axis=-1))
            result[here] += mixed
        return result

    def read(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Each element's scale-table row (how many thresholds lie at or below its log-scale output) and, for a
        mean-scale model, its mean (float64, exact; else None)."""
        mean = None
        if self.means:
            outputs, mean = np.split(outputs, 2, axis=-1)
            mean = mean / float(1 << self.mean_fraction_bits)
        return np.searchsorted(self.network.thresholds, outputs.astype(np.int64), side="right"), mean

    @staticmethod
    def _side_rows(shape: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[2]), shape)  # z is coded with the row of its channel

    def encode(self, latents: PhotoLatents, height: int, width: int, rows: np.ndarray | None = None) -> bytes:
        """Codes one image's rounded latents (shapes must fit the image size); `rows`, y's table rows, if the
        caller already has them."""
        z_shape, y_shape = self.shapes(height, width)
        if latents.z.shape != z_shape or latents.y.shape != y_shape:
            raise ValueError(f"latents {latents.z.shape}/{latents.y.shape} do not fit a {height}x{width} image")
        coder = constriction.stream.stack.AnsCoder()
        if rows is None:
            rows = self.read(self.with_context(self.predict(latents.z), latents.y))[0]
        if self.context is None:
            self.scales.push(coder, latents.y, rows)  # y is already less its mean
        else:  # the last decoded is pushed first
            anchor = anchors(y_shape)
            self.scales.push(coder, latents.y[~anchor], rows[~anchor])
            self.scales.push(coder, latents.y[anchor], rows[anchor])
        self.side.push(coder, latents.z, self._side_rows(z_shape))
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, height: int, width: int) -> PhotoLatents:
        """Decodes one image's latents; raises BitstreamError when the bitstream does not fit."""
        z_shape, y_shape = self.shapes(height, width)
        coder = ans_coder(data)
        try:
            z = self.side.pop(coder, self._side_rows(z_shape))
            outputs = self.predict(z)
            rows, mean = self.read(outputs)
            if self.context is None:
                y = self.scales.pop(coder, rows)
            else:
                anchor = anchors(y_shape)
                y = np.zeros(y_shape, np.int64)
                y[anchor] = self.scales.pop(coder, rows[anchor])
                rows, mean = self.read(self.with_context(outputs, y))
                y[~anchor] = self.scales.pop(coder, rows[~anchor])
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise BitstreamError(f"corrupt bitstream: {exc}") from None
        if not coder.is_empty():
            raise BitstreamError("corrupt bitstream: data left over after the image's latents")
        return PhotoLatents(z, y, mean)


def anchors(shape: tuple[int, ...]) -> np.ndarray:
    """The checkerboard's anchors for y of this (h, w, channels) shape: True where row + column is even (a
    read-only mask of that shape)."""
    rows, columns = np.indices(shape[:2])
    return np.broadcast_to(((rows + columns) % 2 == 0)[:, :, None], shape)


class PhotoEncoder:
    """Encodes images with a hyperprior model's encoder (numpy on the CPU, TensorFlow on a GPU) and its tables."""

    def __init__(self, encoder: NetworkInfo, decoder: NetworkInfo, device: str = "auto") -> None:
        from latentlink.shared.network_runtime import load_network

        self.analysis = load_network(encoder, device)
        self.hyper_analysis = load_network(encoder, device, hyper=True)
        self.tables = PhotoTables(decoder.network)
        self.channels = encoder.input_shape[-1]

    def analyse(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One uint8 image's padded input, continuous y, rounded z and the hyper-synthesis's outputs for it."""
        padded = pad_image(image, self.channels)
        y = self.analysis(padded[None])[0]
        z = np.round(self.hyper_analysis(y[None]))[0].astype(np.int64)  # from y before rounding, as in training
        return padded, y, z, self.tables.predict(z)

    def encode(self, image: np.ndarray, search: Search | None = None) -> tuple[PhotoLatents, bytes]:
        """The latents of one uint8 image, (h, w) or (h, w, c), and their bitstream.

        y less its predicted mean (if any) is rounded, or chosen by `search(image, padded input,
        continuous y less its mean, y's table rows, y's means or None, None)`; with a checkerboard context, the
        other elements then again, given the anchors (`search(..., the anchors)`, which it leaves as they are).
        """
        padded, y, z, outputs = self.analyse(image)
        rows, mean = self.tables.read(outputs)
        coded = y if mean is None else y - mean  # what is coded, before rounding
        chosen = np.round(coded).astype(np.int64) if search is None else search(image, padded, coded, rows, mean, None)
        if self.tables.context is not None:  # the anchors stay; the rest get the context's rows and means
            rows, refined = self.tables.read(self.tables.with_context(outputs, chosen))
            anchor = anchors(y.shape)
            if search is None:
                rest = np.round(y - refined).astype(np.int64)
            else:  # from the values the first search chose, re-centred on the refined means
                rest = search(image, padded, np.where(anchor, chosen, chosen + mean - refined), rows, refined, anchor)
            chosen, mean = np.where(anchor, chosen, rest), refined
        latents = PhotoLatents(z, chosen, mean)
        return latents, self.tables.encode(latents, *image.shape[:2], rows)


class PhotoDecoder:
    """Decodes bitstreams to images with a hyperprior model's decoder."""

    def __init__(self, decoder: NetworkInfo, device: str = "cpu") -> None:
        from latentlink.shared.network_runtime import load_network

        self.synthesis = load_network(decoder, device)
        self.tables = PhotoTables(decoder.network)

    def image(self, latents: PhotoLatents, height: int, width: int, channels: int) -> np.ndarray:
        """The uint8 image (grey: (h, w); colour: (h, w, 3)) that these latents decode to."""
        from latentlink.shared.network_runtime import decode_photo

        return decode_photo(self.synthesis, latents, (height, width, channels))

    def decode(self, data: bytes, height: int, width: int, channels: int) -> tuple[PhotoLatents, np.ndarray]:
        """Decodes one bitstream; returns its latents and image. Raises BitstreamError on a corrupt one."""
        latents = self.tables.decode(data, height, width)
        return latents, self.image(latents, height, width, channels)


@dataclass
class CodedImage:
    """One image ready to send: its name, (height, width, channels), latents and bitstream."""

    name: str
    shape: tuple[int, int, int]
    latents: PhotoLatents
    bitstream: bytes


@dataclass
class PhotoBatcher:
    """Groups coded images into batches of at most `max_pixels` pixels, `max_bytes` of bitstreams and
    `max_images` images."""

    max_pixels: int
    max_bytes: int
    max_images: int = MAX_BATCH_IMAGES
    pending: list[CodedImage] = field(default_factory=list)
    pixels: int = 0  # of the pending images
    size: int = 0  # bitstream bytes of the pending images

    def add(self, item: CodedImage) -> list[CodedImage] | None:
        """Takes one image (which must fit a batch alone); returns the batch it closed, if any."""
        pixels, size = item.shape[0] * item.shape[1], len(item.bitstream)
        full = None
        over = self.pixels + pixels > self.max_pixels or self.size + size > self.max_bytes
        if self.pending and (over or len(self.pending) >= self.max_images):
            full = self.flush()
        self.pending.append(item)
        self.pixels += pixels
        self.size += size
        return full

    def flush(self) -> list[CodedImage] | None:
        """The last, partly filled batch, if any."""
        full, self.pending, self.pixels, self.size = self.pending or None, [], 0, 0
        return full
