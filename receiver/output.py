"""Maps sender-supplied names to safe paths inside the output folder and writes PNGs."""

from __future__ import annotations

from pathlib import Path

from shared.image_io import output_name
from shared.protocol import MAX_NAME_BYTES

__all__ = ["UnsafeNameError", "output_path", "remove_stale_temporaries"]


class UnsafeNameError(ValueError):
    """A name would escape the output folder or is otherwise unusable."""


def output_path(out_dir: Path, name: str) -> Path:
    """Returns where image `name` is written: same relative path, suffix .png, inside out_dir."""
    if not name or len(name.encode()) > MAX_NAME_BYTES or "\\" in name or "\0" in name:
        raise UnsafeNameError(f'unusable image name "{name[:80]}"')
    if len(name) > 1 and name[1] == ":" and name[0].isalpha():
        raise UnsafeNameError(f'image name "{name[:80]}" starts with a drive letter')
    parts = name.split("/")
    # Empty parts catch absolute paths and "a//b"; hidden parts keep our temporary files ours.
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise UnsafeNameError(f'image name "{name}" must be a relative path without empty, "." or ".." parts')
    if any(len(part.encode()) > 255 for part in parts):
        raise UnsafeNameError(f'image name "{name[:80]}" has a component over 255 bytes')
    root = out_dir.resolve()
    target = root.joinpath(*output_name(name).split("/"))
    # A symlink planted inside the output folder must not lead outside it.
    if not target.parent.resolve().is_relative_to(root) or (target.is_symlink()):
        raise UnsafeNameError(f'image name "{name}" leads outside the output folder')
    return target


def remove_stale_temporaries(out_dir: Path) -> int:
    """Deletes half-written files a killed receiver left behind; returns how many.

    Image names never have hidden parts, so every ".*.tmp" file under the
    output folder is one of write_png_atomic's temporaries.
    """
    removed = 0
    for stale in Path(out_dir).rglob(".*.tmp"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
