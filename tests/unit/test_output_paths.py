"""Receiver output paths: same relative names as PNG, never outside the output folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from receiver.output import UnsafeNameError, output_path


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("digit.png", "digit.png"),
        ("a/b/c.jpg", "a/b/c.png"),
        ("scan.v2.tiff", "scan.v2.png"),
        ("raw", "raw.png"),
    ],
)
def test_names_map_to_png_files_with_the_same_relative_path(tmp_path: Path, name, relative):
    assert output_path(tmp_path, name) == tmp_path.resolve() / relative


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../x.png",
        "a/../../x.png",
        "/etc/passwd",
        "a\\b.png",
        "nul\0.png",
        ".hidden",
        "a//b.png",
        "./a.png",
        "x" * 300,
        "C:evil.png",
        "c:/x.png",
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, name):
    with pytest.raises(UnsafeNameError):
        output_path(tmp_path, name)


def test_symlink_inside_the_output_folder_cannot_lead_outside(tmp_path: Path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "link")
    with pytest.raises(UnsafeNameError, match="outside the output folder"):
        output_path(out, "link/x.png")
