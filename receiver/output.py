"""Maps sender-supplied names to safe paths inside the output folder and writes files durably."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from latentlink.shared.image_io import output_name
from latentlink.shared.protocol import MAX_NAME_BYTES

__all__ = [
    "UnsafeNameError",
    "checked_name",
    "output_file",
    "output_path",
    "remove_stale_temporaries",
    "write_files_durably",
]

# Linux syncfs(2): one flush of a whole filesystem, far cheaper than an fsync per small file.
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_SYNCFS = getattr(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True), "syncfs", None)


class UnsafeNameError(ValueError):
    """A name would escape the output folder or is otherwise unusable."""


def output_path(out_dir: Path, name: str) -> Path:
    """Returns where image `name` is written: same relative path, suffix .png, inside out_dir."""
    return Path(output_file(out_dir, name))


def output_file(out_dir: Path, name: str) -> str:
    """output_path as a string: what the receiver uses per image (no Path objects to build and hash)."""
    relative = checked_name(name)
    root = _resolved(out_dir)
    # A symlinked folder planted inside the output folder must not lead outside it. A symlink at the file's own
    # name needs no check (and no system call per image): the write renames over it, never through it.
    if not _folder_inside(root, relative.rpartition("/")[0]):
        raise UnsafeNameError(f'image name "{name}" leads outside the output folder')
    return f"{root}/{relative}"


def checked_name(name: str) -> str:
    """The relative path image `name` is written to (suffix .png); UnsafeNameError for a name unfit for one.

    Checked on the whole string, not part by part (a third of the time, per image): a part is empty where the
    name starts or ends with "/" or holds "//", and starts with "." (".", "..", hidden) where the name does or
    holds "/.". No part can pass 255 bytes in a name that does not.
    """
    size = len(name.encode())
    if not name or size > MAX_NAME_BYTES or "\\" in name or "\0" in name:
        raise UnsafeNameError(f'unusable image name "{name[:80]}"')
    if len(name) > 1 and name[1] == ":" and name[0].isalpha():
        raise UnsafeNameError(f'image name "{name[:80]}" starts with a drive letter')
    # Empty parts catch absolute paths and "a//b"; hidden parts keep our temporary files ours.
    if name[0] in "/." or name[-1] == "/" or "//" in name or "/." in name:
        raise UnsafeNameError(f'image name "{name}" must be a relative path without empty, "." or ".." parts')
    if size > 255 and any(len(part.encode()) > 255 for part in name.split("/")):
        raise UnsafeNameError(f'image name "{name[:80]}" has a component over 255 bytes')
    relative = output_name(name)
    if size > 251 and len(relative.rpartition("/")[2].encode()) > 255:  # ".png" adds 4 bytes at most
        raise UnsafeNameError(f'image name "{name[:80]}..." is over 255 bytes once written with the suffix .png')
    return relative


@functools.lru_cache(maxsize=64)
def _resolved(folder: Path) -> Path:
    return folder.resolve()


# Resolving a path walks every component with a system call; a session's images share a few folders.
@functools.lru_cache(maxsize=4096)
def _folder_inside(root: Path, folder: str) -> bool:
    """Whether relative `folder` ("a/b", or "" for root itself) resolves inside the resolved `root`."""
    return not folder or root.joinpath(*folder.split("/")).resolve().is_relative_to(root)


def remove_stale_temporaries(out_dir: Path) -> int:
    """Deletes half-written files a killed receiver left behind; returns how many.

    Image names never have hidden parts, so every ".*.tmp" file under the
    output folder is one of write_files_durably's temporaries.
    """
    removed = 0
    for stale in Path(out_dir).rglob(".*.tmp"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def write_files_durably(files: Sequence[tuple[Path | str, bytes]]) -> dict[int, str]:
    """Writes a group of files so each is complete on disk, or absent, before this returns.

    A group commit: every file goes to a hidden temporary, the filesystem is
    flushed once, the temporaries are renamed into place, and the renames are
    flushed once more. A crash leaves whole files or stale temporaries, never a
    partial file under a final name. Returns {index: reason} for files that failed.
    Few system calls per file (each one hands the GIL to another thread).
    """
    errors: dict[int, str] = {}
    temporaries: dict[int, str] = {}
    tag = secrets.token_hex(4)
    parents = [os.path.dirname(path) or "." for path, _ in files]
    for folder in set(parents):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            pass  # each of its files fails below, with the reason
    for index, (_, data) in enumerate(files):
        # Never longer than a short final name: any name the filesystem takes has a temporary it takes too.
        temporary = f"{parents[index]}/.{tag}{index}.tmp"
        try:
            fd = os.open(temporary, _CREATE_NEW, 0o644)
            try:
                write_all(fd, data)
                if _SYNCFS is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
            temporaries[index] = temporary
        except OSError as exc:
            errors[index] = f"write failed: {exc}"
            _discard(temporary)
    folders = {parents[i] for i in temporaries}
    try:
        _flush(folders)
    except OSError as exc:  # nothing is known to be on disk: no file may appear
        for temporary in temporaries.values():
            _discard(temporary)
        return errors | {i: f"write failed: {exc}" for i in temporaries}
    for index, temporary in temporaries.items():
        try:
            os.rename(temporary, files[index][0])
        except OSError as exc:
            errors[index] = f"write failed: {exc}"
            _discard(temporary)
    try:
        _flush(folders)
    except OSError as exc:  # the renames may not survive a crash: the sender must not count on them
        errors.update((i, f"write failed: {exc}") for i in temporaries)
    return errors


def write_all(fd: int, data: bytes) -> None:
    """Writes all of `data` to a file descriptor."""
    view = memoryview(data)
    while view:  # a full disk can make a write short before it fails outright
        view = view[os.write(fd, view) :]


def _discard(temporary: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temporary)


def _flush(folders: set[str]) -> None:
    """Makes written data and directory entries under `folders` durable."""
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS is not None:
                if _SYNCFS(fd) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"syncfs: {os.strerror(error)}")
                return  # one filesystem: the first flush covered every folder
            os.fsync(fd)
        finally:
            os.close(fd)
