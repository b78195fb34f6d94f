"""The sender's neural work: encode image batches, and decode them locally to predict quality."""

from __future__ import annotations

import math
import threading
from collections.abc import Container, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from latentlink.sender.photo_search import SEARCH_STEPS, PhotoSearch, search_weight
from latentlink.sender.search import refine
from latentlink.shared.metrics import Quality, squared_errors
from latentlink.shared.model_dir import ModelFiles
from latentlink.shared.network_runtime import Network, decode_images, decode_photo, load_network, resolve_device
from latentlink.shared.photo_codec import CodedImage, PhotoEncoder, PhotoLatents, image_shape
from latentlink.shared.serde import coding_tables
from latentlink.shared.tf_import import freeze_heap

__all__ = [
    "OUT_OF_DOMAIN_DB",
    "BatchEncoder",
    "code_photos",
    "QualityMeter",
    "below_min_psnr",
    "drop_images",
    "out_of_domain_psnr",
]

# An image predicted this far under the model's test PSNR is unlike anything it learned: on the MNIST test
# set no image of the shipped models falls more than 9.3 dB under (q4), while photos squeezed to 28x28 fall 13-16.
OUT_OF_DOMAIN_DB = 10.0


class BatchEncoder:
    """Runs the encoder (and the matching decoder, for the expected quality) on uint8 batches.

    TensorFlow is imported and the networks are built in a background thread, so
    that the caller can connect, handshake and transfer the model meanwhile; the
    first `encode` waits for it. `device="gpu"` is checked at once.
    """

    def __init__(self, model: ModelFiles, device: str = "auto", effort: int = 0) -> None:
        self.model = model
        # --effort: passes of rate-distortion-optimised rounding for digit models (sender/search.py), which need
        # the trained beta; steps of gradient search for photo models (sender/photo_search.py), the trained lambda.
        self._beta = model.card.get("config", {}).get("beta")
        self.any_size = model.encoder.any_size  # a photo model: images of any size, one bitstream each
        self._lmbda = search_weight(model.card) if self.any_size else None
        self.effort_possible = self._beta is not None or self._lmbda is not None
        self.effort = effort if self.effort_possible else 0
        self._device = device
        self._search: PhotoSearch | None = None
        self._search_lock = threading.Lock()
        # A decoder with entropy-coding tables was trained on integer latents.
        self.tables = coding_tables(model.decoder.network)
        if device == "gpu":
            resolve_device(device)  # raises RuntimeError now rather than at the first batch
        self._networks: Future[tuple[Network | PhotoEncoder, Network]] = Future()
        threading.Thread(target=self._build, args=(device,), daemon=True, name="build-networks").start()

    def _build(self, device: str) -> None:
        try:
            if self.any_size:
                encoder = PhotoEncoder(self.model.encoder, self.model.decoder, device)
            else:
                encoder = load_network(self.model.encoder, device)
            networks = (encoder, load_network(self.model.decoder, device))
            if self.any_size and self.effort:
                self._photo_search(encoder)  # TensorFlow and the search's networks, before the first image
            freeze_heap()  # the sender keeps these for good: exempt them from every garbage collection
            self._networks.set_result(networks)
        except BaseException as exc:  # re-raised by the first encode
            self._networks.set_exception(exc)

    def settle(self) -> None:
        """Waits until the background build has ended, whatever its outcome.

        A program that ends (a dead target, say) while TensorFlow is still being
        imported in that thread can abort in TensorFlow's C++ teardown (SIGABRT,
        not our exit code); one that waits here first exits cleanly.
        """
        self._networks.exception()

    def encode(self, images: np.ndarray, effort: int | None = None) -> np.ndarray:
        """Maps (n, 28, 28) uint8 images to (n, latent_dim) float32 latents (integers for coded models).

        Coded models' latents are rounded, or searched with `effort` passes (default: the encoder's).
        """
        latents = self._networks.result()[0](images.astype(np.float32) / 255.0)
        if self.tables is None:
            return latents
        passes = (self.effort if effort is None else effort) if self.effort_possible else 0
        return refine(self.decoder_network, self.tables, images, latents.astype(np.float64), self._beta, passes)

    def encode_photo(self, image: np.ndarray, effort: int | None = None) -> tuple[PhotoLatents, bytes]:
        """A photo model: one uint8 image of any size, (h, w) or (h, w, 3), to its latents and bitstream.

        y is rounded, or searched for with `effort` (default: the encoder's).
        """
        encoder = self._networks.result()[0]
        steps = SEARCH_STEPS[(self.effort if effort is None else effort) if self.effort_possible else 0]
        if not steps:
            return encoder.encode(image)
        search = self._photo_search(encoder)
        return encoder.encode(image, lambda *found: search.refine(*found, steps))

    def _photo_search(self, encoder: PhotoEncoder) -> PhotoSearch:
        """The photo search, built once (it imports TensorFlow)."""
        with self._search_lock:
            if self._search is None:
                self._search = PhotoSearch(self.model.decoder, encoder.tables, self._lmbda, self._device)
            return self._search

    def reconstruct_photo(self, latents: PhotoLatents, shape: tuple[int, int, int]) -> np.ndarray:
        """Decodes one image's latents to the uint8 image a receiver will write."""
        return decode_photo(self.decoder_network, latents, shape)

    @property
    def decoder_network(self) -> Network:
        """The model's decoder, built beside the encoder (waits until it is)."""
        return self._networks.result()[1]

    def reconstruct(self, latents: np.ndarray) -> np.ndarray:
        """Decodes latents to the uint8 images a receiver will write."""
        return decode_images(self.decoder_network, latents)


@dataclass
class QualityMeter:
    """Predicted squared error per image name, so an image resent after a reconnect counts once.

    Decoding on the sender costs as much as on the receiver, so past the first
    `exact_images` only every `sample_every`-th image is measured: a systematic
    sample spread over every batch, which `result` reports as an estimate over
    `sampled` images. On 2,000-60,000 MNIST digits the prediction is within
    0.1 dB of the written images' PSNR (1,055-2,867 decoded). Whole batches, one
    in 16, decoded more and missed 10,000 digits by 0.20 dB: neighbouring
    images tell less than spread ones.
    """

    exact_images: int = 1024
    sample_every: int = 32
    per_image: dict[str, tuple[float, int]] = field(default_factory=dict)
    offered: int = 0  # images offered to `rows`

    def rows(self, count: int) -> np.ndarray:
        """Which of the next `count` images to measure: their indices among them (none: an empty array)."""
        seen = np.arange(self.offered, self.offered + count)
        self.offered += count
        past = seen - self.exact_images
        return np.flatnonzero((past < 0) | (past % self.sample_every == 0))

    @property
    def sampled(self) -> int:
        """How many images the prediction covers."""
        return len(self.per_image)

    def add(self, names: list[str], original, reconstructed) -> np.ndarray:
        """Records each image's squared error (uint8 stacks, or lists of uint8 images of any shapes); returns each
        one's PSNR."""
        if isinstance(original, np.ndarray) and isinstance(reconstructed, np.ndarray):
            errors = squared_errors(original, reconstructed)
            pixels = np.full(len(errors), math.prod(original.shape[1:]))
        else:
            pairs = list(zip(original, reconstructed, strict=True))
            errors = np.array([squared_errors(a[None], b[None])[0] for a, b in pairs])
            pixels = np.array([a.size for a, _ in pairs])
        self.per_image.update((name, (float(e), int(n))) for name, e, n in zip(names, errors, pixels, strict=True))
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(pixels / errors)

    def gate(
        self, names: list[str], original: np.ndarray, reconstructed: np.ndarray, min_psnr: float | None
    ) -> dict[str, str]:
        """Records the images' quality; with `min_psnr`, forgets those predicted under it and returns why they fail."""
        psnr = self.add(names, original, reconstructed)
        if min_psnr is None:
            return {}
        rejected = below_min_psnr(names, psnr, min_psnr)
        self.discard(list(rejected))
        return rejected

    def discard(self, names: list[str]) -> None:
        """Forgets images that were measured but are not sent."""
        for name in names:
            self.per_image.pop(name, None)

    def below(self, psnr_db: float | None) -> dict[str, float]:
        """The measured images whose predicted PSNR is under `psnr_db`, with that PSNR."""
        if psnr_db is None:
            return {}
        found = {name: 10.0 * math.log10(n / e) for name, (e, n) in self.per_image.items() if e > 0}
        return {name: value for name, value in found.items() if value < psnr_db}

    def result(self) -> Quality | None:
        if not self.per_image:
            return None
        squared_error = sum(e for e, _ in self.per_image.values())
        return Quality.from_mse(squared_error / sum(n for _, n in self.per_image.values()))


def out_of_domain_psnr(model: ModelFiles) -> float | None:
    """The predicted PSNR under which an image is far from the model's domain (None if its card has no test PSNR)."""
    test_psnr = model.card.get("test", {}).get("psnr_db")
    return None if test_psnr is None else test_psnr - OUT_OF_DOMAIN_DB


def drop_images(names: list[str], latents: np.ndarray, drop: Container[str]) -> tuple[list[str], np.ndarray]:
    """The names and latent rows of a batch without the images named in `drop`."""
    if not drop:
        return names, latents
    rows = [i for i, name in enumerate(names) if name not in drop]
    return [names[i] for i in rows], latents[rows]


def code_photos(
    encoder: BatchEncoder,
    names: list[str],
    images,
    quality: QualityMeter,
    min_psnr: float | None,
    max_pixels: int,
    max_bytes: int,
) -> Iterator[CodedImage | tuple[str, str]]:
    """Codes images of any size one by one: each becomes a CodedImage, or (name, why) when it cannot be sent.

    An image over `max_pixels` or whose bitstream is over `max_bytes` cannot
    travel; with `min_psnr`, one predicted under it is not sent.
    """
    for name, image in zip(names, images, strict=True):
        shape = image_shape(image)
        if shape[0] * shape[1] > max_pixels:
            yield name, f"{shape[1]}x{shape[0]} image is over the receiver's {max_pixels} pixels"
            continue
        latents, data = encoder.encode_photo(image)
        if len(data) > max_bytes:
            yield name, f"its {len(data)}-byte bitstream is over the receiver's message limit"
            continue
        if min_psnr is not None or quality.rows(1).size:
            reconstructed = encoder.reconstruct_photo(latents, shape)
            if rejected := quality.gate([name], image[None], reconstructed[None], min_psnr):
                yield name, rejected[name]
                continue
        yield CodedImage(name, shape, latents, data)


def below_min_psnr(names: list[str], psnr: np.ndarray, min_psnr: float) -> dict[str, str]:
    """--min-psnr: the images to fail instead of sending, with the reason."""
    return {
        name: f"predicted PSNR {value:.1f} dB is below --min-psnr {min_psnr:g} dB "
        "(unlike the images the model was trained on); not sent"
        for name, value in zip(names, psnr, strict=True)
        if value < min_psnr
    }
