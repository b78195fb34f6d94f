"""Finds, reads and writes greyscale images (Pillow) and image arrays (.npy/.npz)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageError", "SourceImage", "find_sources", "output_name", "read_image", "write_png_atomic"]

ARRAY_SUFFIXES = (".npy", ".npz")
# Pillow decodes bombs lazily; nothing we accept is anywhere near this big.
Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024


class ImageError(ValueError):
    """An input image cannot be used (unreadable, corrupt, wrong size)."""


@dataclass(frozen=True)
class SourceImage:
    """One image to send: its relative name, input size in bytes, and how to load it."""

    name: str
    size_bytes: int
    load: Callable[[], np.ndarray]


def find_sources(source: Path, shape: tuple[int, int], resize: bool = False) -> list[SourceImage]:
    """Lists the images under a folder (recursively, sorted) or in one .npy/.npz array file.

    Raises FileNotFoundError for a missing path and ImageError for an empty folder.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f'no such file or folder: "{source}"')
    if source.is_file():
        if source.suffix.lower() not in ARRAY_SUFFIXES:
            return [_file_source(source, source.name, shape, resize)]
        return list(_array_sources(source, shape))
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )
    if not files:
        raise ImageError(f'folder "{source}" has no files to send')
    return [_file_source(p, p.relative_to(source).as_posix(), shape, resize) for p in files]


def output_name(name: str) -> str:
    """Returns the relative path a receiver writes image `name` to: the same, with suffix .png."""
    head, _, last = name.rpartition("/")
    stem = last.rsplit(".", 1)[0] if "." in last[1:] else last
    return f"{head}/{stem}.png" if head else f"{stem}.png"


def read_image(path: Path, shape: tuple[int, int], resize: bool = False) -> np.ndarray:
    """Reads any Pillow-readable image as uint8 greyscale of `shape` (resizing only if asked)."""
    try:
        with Image.open(path) as image:
            image.load()
            grey = image.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    want = (shape[1], shape[0])  # Pillow sizes are (width, height)
    if grey.size != want:
        if not resize:
            raise ImageError(
                f"image is {grey.size[0]}x{grey.size[1]}, the model takes {want[0]}x{want[1]} (use --resize)"
            )
        grey = grey.resize(want, Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.uint8)


def write_png_atomic(path: Path, pixels: np.ndarray) -> None:
    """Writes a uint8 greyscale PNG durably: temporary file, fsync, atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(pixels, mode="L").save(handle, format="PNG")
            handle.flush()
            os.fsync(handle.fileno())  # durable before the rename makes it visible (and before the ack)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_source(path: Path, name: str, shape: tuple[int, int], resize: bool) -> SourceImage:
    return SourceImage(name=name, size_bytes=path.stat().st_size, load=lambda: read_image(path, shape, resize))


def _array_sources(path: Path, shape: tuple[int, int]) -> Iterator[SourceImage]:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = "x_test" if "x_test" in data.files else data.files[0]
                array, stem = data[key], f"{path.stem}/{key}"
        else:
            array, stem = np.load(path, allow_pickle=False, mmap_mode="r"), path.stem
    except (OSError, ValueError, IndexError) as exc:
        raise ImageError(f'"{path}" is not a readable image array: {exc}') from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != shape or array.dtype != np.uint8:
        raise ImageError(f'"{path}" holds {array.dtype}{list(array.shape)}; expected uint8[N, {shape[0]}, {shape[1]}]')
    if len(array) == 0:
        raise ImageError(f'"{path}" holds no images')
    width = len(str(len(array) - 1))
    for index in range(len(array)):
        yield SourceImage(
            name=f"{stem}_{index:0{width}d}.png",
            size_bytes=shape[0] * shape[1],
            load=lambda i=index: np.asarray(array[i]),
        )
