"""Which shipped model suits a set of inputs: the MNIST ladder for 28x28 grey digits, the photo ladder otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentlink.shared.image_io import ANY_SIZE, FitResize, ImageError, Listing, SourceImage, list_inputs, sources_at
from latentlink.shared.model_dir import ModelFiles, load_model_dir, quality_model_dir

__all__ = ["DIGIT_SHAPE", "choose_model", "looks_like_digits"]

DIGIT_SHAPE = (28, 28)
SAMPLE_IMAGES = 32  # inputs looked at, spread over the list, to decide


def looks_like_digits(images: Sequence[np.ndarray]) -> bool:
    """Whether every image is a 28x28 greyscale image, what the MNIST ladder was made for."""
    return all(np.ndim(image) == 2 and np.shape(image) == DIGIT_SHAPE for image in images)


def choose_model(
    paths: Sequence[Path],
    model: Path | None,
    quality: int | None,
    resize: FitResize | None,
    skipped: dict[str, str],
) -> tuple[ModelFiles, list[SourceImage], str | None]:
    """The model to use, the inputs under `paths` it will read, and a note saying why when it was chosen here.

    With `model`, that model. Otherwise a sample of the inputs decides: 28x28
    grey digits (or `resize`, which fits images to digits) take the MNIST
    ladder at `quality`, anything else the photo ladder. The inputs are listed
    once. Raises what list_inputs, sources_at and load_model_dir raise, and
    ValueError for a quality the ladder lacks.
    """
    listings = [list_inputs(path, skipped) for path in paths]
    if model is not None:
        files = load_model_dir(model)
        return files, _sources(listings, files.image_shape, resize), None
    digits = resize is not None or looks_like_digits(_sample(listings))  # without resize, photos get none
    files = load_model_dir(quality_model_dir(quality, photos=not digits))
    kind = "28x28 grey digits" if digits else "photos (any size, grey or colour)"
    note = f"model {files.name}: the inputs are {kind}; --quality or --model chooses another"
    return files, _sources(listings, files.image_shape if digits else ANY_SIZE, resize), note


def _sample(listings: Sequence[Listing]) -> list[np.ndarray]:
    """Up to SAMPLE_IMAGES of the inputs, spread evenly over them all, read at any size; unreadable ones are left out
    (they are reported when sent). Only a folder's picked files become sources: building all of them at any size
    as well as at the model's cost ~70 ms for 60,000 files."""
    inputs = [listing.files or sources_at(listing, ANY_SIZE) for listing in listings]  # a folder's: its names
    total = sum(len(part) for part in inputs)
    picks = np.unique(np.linspace(0, total - 1, min(SAMPLE_IMAGES, total)).astype(int))
    sample, first = [], 0
    for listing, part in zip(listings, inputs, strict=True):
        mine = [part[index - first] for index in picks if first <= index < first + len(part)]
        first += len(part)
        if not mine:
            continue
        if listing.files:  # a folder's picked files, as a listing of their own
            mine = sources_at(Listing(listing.path, mine), ANY_SIZE)
        for source in mine:
            try:
                sample.append(source.load())
            except ImageError:
                continue  # reported when it is sent
    return sample


def _sources(listings: Sequence[Listing], shape: tuple[int, ...], resize) -> list[SourceImage]:
    return [source for listing in listings for source in sources_at(listing, shape, resize)]
