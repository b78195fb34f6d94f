"""Receiver output paths: same relative names as PNG, never outside the output folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latentlink.receiver import output
from latentlink.receiver.output import UnsafeNameError, output_file, output_path, write_files_durably


@pytest.fixture(params=["unnamed", "named"])
def staging(request, monkeypatch, tmp_path: Path) -> str:
    """Runs a group-commit test both ways a file is staged: unnamed and linked in, or a renamed temporary."""
    if request.param == "named":
        monkeypatch.setattr(output, "_links_unnamed", lambda folder: False)
    elif not output._links_unnamed(str(tmp_path)):
        pytest.skip("this filesystem or kernel cannot link unnamed files (O_TMPFILE, linkat AT_EMPTY_PATH)")
    return request.param


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
        "a/.hidden/b.png",
        "a/..",
        "a/.",
        "a/",
        "a//b.png",
        "./a.png",
        "d/" + "x" * 256 + "/b.png",
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


def test_group_commit_writes_every_file_and_leaves_no_temporaries(tmp_path: Path, staging):
    files = [(tmp_path / "s" / f"{i}.png", bytes([i]) * (i + 1)) for i in range(20)]
    files.append((tmp_path / "s" / "deeper" / "x.png", b"deep"))
    assert write_files_durably(files) == {}
    for path, data in files:
        assert path.read_bytes() == data
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_group_commit_fails_only_the_files_that_cannot_be_written(tmp_path: Path, staging):
    (tmp_path / "taken.png").mkdir()  # a folder where a file should go: its rename fails
    (tmp_path / "blocked").write_text("a file where a folder should be")
    files = [
        (tmp_path / "ok.png", b"1"),
        (tmp_path / "taken.png", b"2"),
        (tmp_path / "blocked" / "x.png", b"3"),
        (tmp_path / "fine.png", b"4"),
    ]
    errors = write_files_durably(files)
    assert sorted(errors) == [1, 2] and all(reason.startswith("write failed:") for reason in errors.values())
    assert (tmp_path / "ok.png").read_bytes() == b"1" and (tmp_path / "fine.png").read_bytes() == b"4"
    assert not [p for p in tmp_path.rglob(".*.tmp")]


@pytest.mark.parametrize("length", [240, 241, 248, 255])
def test_legal_long_names_are_written_whatever_their_place_in_the_batch(tmp_path: Path, staging, length):
    """Temporaries are never longer than the final name (defect 6: 241-255 bytes failed with ENAMETOOLONG)."""
    names = [f"{'a' * (length - 4 - len(str(i)))}{i}.png" for i in range(12)]
    assert all(len(name.encode()) == length for name in names)
    files = [(output_path(tmp_path, name), b"png bytes") for name in names]
    assert write_files_durably(files) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_name_over_255_bytes_once_suffixed_is_refused_up_front(tmp_path: Path):
    with pytest.raises(UnsafeNameError, match="over 255 bytes once written with the suffix .png"):
        output_path(tmp_path, "b" * 253)  # "b...b.png" would be 257 bytes


def test_a_symlink_at_an_images_name_is_replaced_never_written_through(tmp_path: Path, staging):
    out, outside = tmp_path / "out", tmp_path / "outside.png"
    out.mkdir()
    outside.write_bytes(b"not yours")
    os.symlink(outside, out / "x.png")
    target = output_path(out, "x.png")
    assert write_files_durably([(target, b"image")]) == {}
    assert outside.read_bytes() == b"not yours"
    assert not (out / "x.png").is_symlink() and (out / "x.png").read_bytes() == b"image"


def test_group_commit_takes_path_strings_and_names_relative_to_the_working_folder(tmp_path: Path, staging, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_files_durably([("here.png", b"1"), (f"{tmp_path}/sub/there.png", b"2")]) == {}
    assert (tmp_path / "here.png").read_bytes() == b"1" and (tmp_path / "sub" / "there.png").read_bytes() == b"2"
    assert output_file(tmp_path, "sub/there.png") == str(output_path(tmp_path, "sub/there.png"))


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_new_files_are_linked_in_without_a_rename(tmp_path: Path, monkeypatch):
    """One directory change per file, not two: unnamed files get their names with linkat, never a rename."""
    if not output._links_unnamed(str(tmp_path)):
        pytest.skip("this filesystem or kernel cannot link unnamed files")

    def no_rename(*args):
        raise AssertionError("a new file was renamed into place")

    monkeypatch.setattr(output.os, "rename", no_rename)
    files = [(tmp_path / f"{i}.png", bytes([i]) * 7) for i in range(30)]
    assert write_files_durably(files) == {}
    assert all(path.read_bytes() == data for path, data in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.png" for i in range(30))


def test_an_existing_file_is_replaced_whole(tmp_path: Path, staging):
    (tmp_path / "a.png").write_bytes(b"old image")
    assert write_files_durably([(tmp_path / "a.png", b"new"), (tmp_path / "b.png", b"other")]) == {}
    assert (tmp_path / "a.png").read_bytes() == b"new" and (tmp_path / "b.png").read_bytes() == b"other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_files_past_the_descriptor_budget_go_through_named_temporaries(tmp_path: Path, monkeypatch):
    """The unnamed files a group holds open are bounded process-wide; the rest are written the named way."""
    budget = output._DescriptorBudget()
    budget.take(10**9)
    budget.give(5)  # 5 descriptors free
    monkeypatch.setattr(output, "_UNNAMED_FILES", budget)
    before = _open_descriptors()
    files = [(tmp_path / f"{i}.png", b"x" * i) for i in range(40)]
    assert write_files_durably(files) == {}
    assert all(path.read_bytes() == data for path, data in files)
    assert budget.take(10**9) == 5 and _open_descriptors() == before  # every descriptor given back and closed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_flush_leaves_no_file_no_temporary_and_no_descriptor(tmp_path: Path, monkeypatch, staging):
    def broken_flush(folders):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(output, "_flush", broken_flush)
    before = _open_descriptors()
    errors = write_files_durably([(tmp_path / f"{i}.png", b"data") for i in range(10)])
    assert sorted(errors) == list(range(10)) and all("Input/output error" in e for e in errors.values())
    assert list(tmp_path.iterdir()) == [] and _open_descriptors() == before
