"""Finds, reads and writes images, greyscale or colour (Pillow), and image arrays (.npy/.npz)."""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
from PIL import Image, UnidentifiedImageError

from latentlink.shared.failures import examples, group_by_reason
from latentlink.shared.model_format import ANY_SIZE, is_any_size

__all__ = [
    "ANY_SIZE",
    "ArrayRows",
    "FitResize",
    "ImageError",
    "Listing",
    "SourceImage",
    "batch_file_name",
    "encode_png",
    "encode_pngs",
    "find_sources",
    "is_any_size",
    "is_image_suffix",
    "list_inputs",
    "output_name",
    "read_image",
    "scale_to_uint8",
    "sources_at",
    "summarize_skipped",
]

ARRAY_SUFFIXES = (".npy", ".npz")
# Pillow decodes bombs lazily; nothing we accept is anywhere near this big.
Image.MAX_IMAGE_PIXELS = 64 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024
_ARRAY_DTYPES = tuple(np.dtype(t) for t in ("u1", "<u2", ">u2", "<f2", "<f4", ">f4", "<f8", ">f8"))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An input image cannot be used (unreadable, corrupt, wrong size)."""


@dataclass(slots=True)
class SourceImage:
    """One image to send: its relative name, and how to read it.

    Small on purpose (a 60,000-image folder costs a few MB): the reader is shared
    by all images of one source and `key` says which image it is. Not frozen: a
    frozen dataclass takes 3x as long to build (60,000 of them: 42 against 14 ms,
    before the first image can go), and nothing changes one after it is built.
    """

    name: str
    reader: Callable[[Any], tuple[np.ndarray, int]]  # key -> (the image, the bytes of its input)
    key: Any
    in_file: bool = False  # reads a file by its path: the reader can run in a worker process

    def read(self) -> tuple[np.ndarray, int]:
        """The image as uint8, and the bytes its input took (its file's size; an array's bytes per image);
        raises ImageError when it cannot be read."""
        return self.reader(self.key)

    def load(self) -> np.ndarray:
        """The image alone (see read)."""
        return self.read()[0]


@dataclass(frozen=True)
class Listing:
    """What is under an input path, found once (list_inputs) and readable at any shape (sources_at)."""

    path: Path
    files: list[str]  # a folder's image files, by their names relative to it, in order
    array: tuple[np.ndarray, str] | None = None  # an .npy/.npz file's images, and the stem of their names


def list_inputs(source: Path, skipped: dict[str, str] | None = None) -> Listing:
    """Finds the images under a folder (recursively, sorted), one image, or the images of a .npy/.npz array.

    In a folder, hidden files are ignored; files without an image extension,
    symlinked folders (not followed) and dangling links are left out and, when
    `skipped` is given, recorded there with the reason. Raises
    FileNotFoundError for a missing path and ImageError when nothing is left.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f'no such file or folder: "{source}"')
    if source.is_file():
        return Listing(source, [], _load_array(source) if source.suffix.lower() in ARRAY_SUFFIXES else None)
    skipped = {} if skipped is None else skipped
    files = sorted(_walk(source, skipped), key=_by_parts)
    if not files:
        left_out = f" ({len(skipped)} other files skipped: {summarize_skipped(skipped)})" if skipped else ""
        raise ImageError(f'folder "{source}" has no image files to send{left_out}')
    return Listing(source, files)


def sources_at(listing: Listing, shape: tuple[int, int], resize: FitResize | bool = False) -> list[SourceImage]:
    """The listed images, read at `shape` (fitted to it with `resize`); ImageError for an array of another shape."""
    resize = FitResize() if resize is True else resize or None
    if listing.array is not None:
        return list(_array_sources(listing.path, *listing.array, shape))
    if not listing.files:
        return [_file_source(listing.path, listing.path.name, shape, resize)]
    reader = functools.partial(_read_under, f"{os.fspath(listing.path)}/", shape, resize)
    return [SourceImage(name, reader, name, True) for name in listing.files]


def find_sources(
    source: Path,
    shape: tuple[int, int],
    resize: FitResize | bool = False,
    skipped: dict[str, str] | None = None,
) -> list[SourceImage]:
    """The images under `source` (list_inputs says which), read at `shape` (sources_at)."""
    return sources_at(list_inputs(source, skipped), shape, resize)


def is_image_suffix(suffix: str) -> bool:
    """Whether a folder search takes files with this (lower-case) extension: every one Pillow knows (PNG, JPEG,
    TIFF, PGM, WebP, ...). Pillow registers its common formats first and the other ~40 only when one is asked for
    (~20 ms), so a folder of PNGs, and a process that never lists one (the receiver), never loads them."""
    Image.preinit()
    return suffix in Image.EXTENSION or suffix in Image.registered_extensions()


def summarize_skipped(skipped: dict[str, str]) -> str:
    """One line for what a folder search left out: counts by reason, with a few names each."""
    return "; ".join(f"{reason}: {len(names)} ({examples(names)})" for reason, names in group_by_reason(skipped))


def output_name(name: str) -> str:
    """Returns the relative path a receiver writes image `name` to: the same, with suffix .png."""
    # The common case, a name that is its own output, in a third of the time.
    if name.endswith(".png") and name[-5:-4] not in ("", "/") and not name.startswith("/"):
        return name
    head, _, last = name.rpartition("/")
    stem = last.rsplit(".", 1)[0] if "." in last[1:] else last
    return f"{head}/{stem}.png" if head else f"{stem}.png"


def batch_file_name(first_seq: int) -> str:
    """Returns the file a receiver in npz mode writes the batch starting at `first_seq` to."""
    return f"batch-{first_seq:012d}.npz"


def read_image(path: Path | str, shape: tuple[int, ...], resize: FitResize | bool | None = None) -> np.ndarray:
    """Reads any Pillow-readable image as uint8 greyscale of `shape` (fitting other sizes only if asked).

    `shape` ANY_SIZE: any size, grey (h, w) or colour (h, w, 3) as the file is.

    8-bit greyscale PNGs of the right size, the common case, take a fast path
    (libpng through imagecodecs, without the GIL); everything else goes through
    Pillow. 16-bit and float images are scaled to 8 bits (see `scale_to_uint8`).
    """
    return _read_sized(path, shape, resize)[0]


def _read_sized(path: Path | str, shape: tuple[int, ...], resize: FitResize | bool | None) -> tuple[np.ndarray, int]:
    """read_image, and the file's size: a folder is listed without a stat per file, its sizes come with the reads."""
    try:
        data = _read_file(path)
    except OSError as exc:
        raise ImageError(f"cannot read the file ({type(exc).__name__}: {exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file is larger than {MAX_FILE_BYTES // 2**20} MiB; not an image this model can take")
    return _image_from(data, shape, resize), len(data)


def _image_from(data: bytes, shape: tuple[int, ...], resize: FitResize | bool | None) -> np.ndarray:
    """An image file's bytes as read_image returns them."""
    if is_any_size(shape):
        return _read_any(data)
    if _is_grey8_png(data, shape):
        try:
            return imagecodecs.png_decode(data)
        except Exception as exc:  # PngError, or whatever libpng's message turns into (UnicodeDecodeError seen)
            raise ImageError(f"not a readable image (corrupt PNG: {type(exc).__name__})") from None
    grey = _decode(data, _to_grey8)
    want = (shape[1], shape[0])  # Pillow sizes are (width, height)
    if grey.size != want:
        if not resize:
            raise ImageError(
                f"image is {grey.size[0]}x{grey.size[1]}, the model takes {want[0]}x{want[1]} (use --resize)"
            )
        grey = (FitResize() if resize is True else resize)(grey, shape)
    return np.asarray(grey, dtype=np.uint8)


def _read_file(path: Path | str) -> bytes:
    """The file's bytes, up to one past MAX_FILE_BYTES, with system calls alone: no buffered file object, whose
    set-up was a third of a digit's read (6.9 against 10.6 µs per file, bench/RESULTS.md).

    It asks for one byte past the file's size, or past MAX_FILE_BYTES (a special file reports 0): asking for
    MAX_FILE_BYTES + 1 of a small file has the read allocate that much first, 2.6x the CPU of a digit's read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        wanted = min(size, MAX_FILE_BYTES) + 1 if size else MAX_FILE_BYTES + 1
        parts, got = [], 0
        while got < wanted and (part := os.read(fd, wanted - got)):
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _read_any(data: bytes) -> np.ndarray:
    """Any image as uint8: grey files as (h, w), everything else as RGB (h, w, 3); alpha is dropped."""
    return np.asarray(
        _decode(data, lambda image: _to_grey8(image) if image.mode in _GREY_MODES else image.convert("RGB"))
    )


def _decode(data: bytes, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Decodes an image file's bytes with Pillow and converts it; raises ImageError for anything unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return convert(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        reason = "not a recognised image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageError(f"not a readable image ({type(exc).__name__}: {reason})") from None


class FitResize:
    """--resize: scales an image of another size to fit the model's, keeping its aspect ratio; pads with black.

    Black is the background of the digits the shipped models learned. `count`
    says how many images were resized, for the sender's summary.
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, image: Image.Image, shape: tuple[int, int]) -> Image.Image:
        height, width = shape
        scale = min(width / image.width, height / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        canvas = Image.new("L", (width, height), 0)
        canvas.paste(image.resize(size, Image.Resampling.LANCZOS), ((width - size[0]) // 2, (height - size[1]) // 2))
        with self._lock:
            self.count += 1
        return canvas


def scale_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Maps greyscale pixels to uint8: 16-bit integers from 0..65535, floats from [0, 1]; refuses other ranges."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype.kind in "iu":
        if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ImageError(f"{pixels.dtype} pixels outside 0..65535; integer images are read as 8 or 16 bits")
        return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if pixels.dtype.kind == "f":
        if pixels.size and not (np.all(np.isfinite(pixels)) and pixels.min() >= 0.0 and pixels.max() <= 1.0):
            raise ImageError("float pixels outside [0, 1]; float images are read as 0.0 (black) to 1.0 (white)")
        return np.rint(pixels.astype(np.float64) * 255.0).astype(np.uint8)
    raise ImageError(f"pixels of type {pixels.dtype} are not an image")


def _to_grey8(image: Image.Image) -> Image.Image:
    """An 8-bit greyscale copy; 16-bit and float greyscale are scaled, not clipped as Pillow's convert("L") does."""
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(scale_to_uint8(np.asarray(image)), mode="L")
    return image.convert("L")


def encode_png(pixels: np.ndarray) -> bytes:
    """Encodes a uint8 image, greyscale (h, w) or colour (h, w, 3), as PNG bytes (see encode_pngs)."""
    return encode_pngs(np.asarray(pixels)[None])[0]


def encode_pngs(images: np.ndarray | Sequence[np.ndarray]) -> list[bytes]:
    """The PNG bytes of each uint8 image: of a stack, greyscale (n, h, w) or colour (n, h, w, 3), at once; of a
    list (images of any shapes), one by one.

    Rows unfiltered, deflated by zlib-ng at level 1 (imagecodecs, without holding the GIL), in the PNG
    container written here (IHDR, one IDAT, IEND). libpng in imagecodecs links the classic zlib, whose set-up
    per stream was most of a digit's encoding: 8.0 against 16.2 µs per digit, for files 6% larger (a 766x510
    photo: 8.3 against 11.3 ms, 4% larger); bench/RESULTS.md. Any PNG reader reads them (tests). The rows of
    the whole stack are laid out at once: less per image holds the GIL (7.2 against 8.1 µs per digit).
    """
    if not isinstance(images, np.ndarray):
        return [encode_png(image) for image in images]
    stack = np.ascontiguousarray(images, dtype=np.uint8)
    count, height, width = stack.shape[:3]
    row_bytes = stack[0, 0].size if count else 0
    rows = np.zeros((count, height, 1 + row_bytes), np.uint8)  # each row: filter type 0 (none), then its bytes
    rows[:, :, 1:] = stack.reshape(count, height, row_bytes)
    data, size = rows.tobytes(), height * (1 + row_bytes)
    head = _png_head(height, width, 2 if stack.ndim == 4 else 0)  # PNG colour types: 2 RGB, 0 greyscale
    return [
        head + _png_chunk(b"IDAT", imagecodecs.zlibng_encode(data[first : first + size], level=1)) + _PNG_END
        for first in range(0, count * size, size)
    ]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: the length of its data, its type, the data, and the CRC-32 of type and data."""
    return b"".join((len(data).to_bytes(4, "big"), kind, data, zlib.crc32(data, zlib.crc32(kind)).to_bytes(4, "big")))


_PNG_END = _png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=64)
def _png_head(height: int, width: int, colour: int) -> bytes:
    """The PNG signature and IHDR chunk of an 8-bit, non-interlaced image."""
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))


def _is_grey8_png(data: bytes, shape: tuple[int, int]) -> bool:
    """True for a non-interlaced 8-bit greyscale PNG of exactly `shape` (read from its IHDR chunk)."""
    if len(data) < 33 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return False
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return (height, width) == tuple(shape) and depth == 8 and colour == 0 and interlace == 0


def _file_source(path: Path, name: str, shape: tuple[int, int], resize: FitResize | None) -> SourceImage:
    return SourceImage(name, functools.partial(_read_sized, shape=shape, resize=resize), path, True)


def _by_parts(name: str) -> str:
    """A listed name's sort key: its parts in order ("a/b" before "a.b", a folder's files together). "/" becomes
    "\\0", which sorts below any character a name can hold, so the strings order as their lists of parts would, at a
    fifth of the cost of building the lists (60,000 names: 22 against 122 ms)."""
    return name.replace("/", "\0")


def _walk(root: Path, skipped: dict[str, str]) -> Iterator[str]:
    """The relative posix name of every image file under `root`; what is left out goes to `skipped`. No stat
    per file: the sizes come with the reads (a stat was 150 of the 230 ms that listing 60,000 files took)."""
    pending = [("", os.fspath(root))]
    taken: dict[str, bool] = {}  # is_image_suffix of each extension met, as written: a folder has a few
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink() and entry.is_dir():
                    skipped[name + "/"] = "symlinked folder, not followed"
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((f"{name}/", entry.path))
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    skipped[name] = "dangling link"
                elif not entry.is_file():
                    skipped[name] = "not a regular file"
                elif not _image_extension(entry.name, taken):
                    skipped[name] = "no image extension"
                else:
                    yield name


def _image_extension(name: str, taken: dict[str, bool]) -> bool:
    """Whether a (not hidden) file name has an image extension, looked up once per extension in `taken`."""
    dot = name.rfind(".")
    suffix = name[dot:] if dot > 0 else ""  # os.path.splitext's, for a name that does not start with "."
    found = taken.get(suffix)
    if found is None:
        found = taken[suffix] = is_image_suffix(suffix.lower())
    return found


def _read_under(root: str, shape: tuple[int, int], resize: FitResize | None, name: str) -> tuple[np.ndarray, int]:
    """A listed file, by `root` (ending in "/") and its name, joined as strings: a digit's read took 16.3 µs,
    against 19.6 through pathlib."""
    return _read_sized(root + name, shape, resize)


def _load_array(path: Path) -> tuple[np.ndarray, str]:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                key = "x_test" if "x_test" in data.files else data.files[0]
                return data[key], f"{path.stem}/{key}"
        return np.load(path, allow_pickle=False, mmap_mode="r"), path.stem
    except (OSError, ValueError, IndexError) as exc:
        raise ImageError(f'"{path}" is not a readable image array: {exc}') from None


def _array_sources(path: Path, array: np.ndarray, stem: str, shape: tuple[int, int]) -> Iterator[SourceImage]:
    if array.ndim == 2 or (is_any_size(shape) and array.ndim == 3 and array.shape[-1] == 3):
        array = array[None]
    fits = array.ndim == 3 and array.shape[1:] == tuple(shape)
    if is_any_size(shape):
        fits = array.ndim == 3 or (array.ndim == 4 and array.shape[3] == 3)
    if not fits or array.dtype not in _ARRAY_DTYPES:
        raise ImageError(
            f'"{path}" holds {array.dtype}{list(array.shape)}; expected [N, {shape[0]}, {shape[1]}] of '
            "uint8, uint16 (0..65535) or float ([0, 1])"
        )
    if len(array) == 0:
        raise ImageError(f'"{path}" holds no images')
    width = len(str(len(array) - 1))
    reader = ArrayRows(array, math.prod(array.shape[1:]) * array.itemsize)
    for index in range(len(array)):
        yield SourceImage(f"{stem}_{index:0{width}d}.png", reader, index)


@dataclass(frozen=True, eq=False)  # compared by identity: its array is not a value to compare
class ArrayRows:
    """The reader of an array's images (a SourceImage's key is its row): one image, or a run of rows at once."""

    array: np.ndarray
    size_bytes: int  # each image's bytes in the array

    def __call__(self, index: int) -> tuple[np.ndarray, int]:
        return scale_to_uint8(self.array[index]), self.size_bytes

    def rows(self, first: int, stop: int) -> np.ndarray:
        """Rows first..stop-1 as one uint8 stack (a batch in one step); ImageError if any row is not an image."""
        return scale_to_uint8(self.array[first:stop])
