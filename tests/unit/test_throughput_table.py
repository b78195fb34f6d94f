"""The throughput benchmark sets each run against the baseline on the same inputs and link."""

from __future__ import annotations

from tests.conftest import load_bench

throughput = load_bench("throughput")


def _run(system: str, inputs: str, wall_s: float, link: str = "loopback"):
    return throughput.Run(system, inputs, link, 60_000, wall_s, wall_s, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_a_folder_run_is_set_against_the_folder_baseline_not_the_array_one():
    runs = [
        _run("latentlink", "folder 60,000", 12.0),
        _run("baseline", "folder 60,000", 4.0),
        _run("latentlink", "array 60,000", 6.0),
        _run("baseline", "array 60,000", 5.0),
        _run("latentlink", "array 60,000, seed-k64", 1.0),
    ]
    assert throughput.baseline_ratio(runs[0], runs) == 4.0 / 12.0
    assert throughput.baseline_ratio(runs[2], runs) == 5.0 / 6.0
    assert throughput.baseline_ratio(runs[1], runs) is None
    assert throughput.baseline_ratio(runs[4], runs) is None  # no baseline with the seed model
    assert throughput.baseline_ratio(_run("latentlink", "folder 60,000", 2.0, "1 Mbit/s, 40 ms"), runs) is None


def test_the_input_files_stay_those_every_session_measured(mnist, tmp_path):
    """The baseline sends the input files: they must not follow the receiver's own PNG encoder when it changes."""
    import numpy as np

    from latentlink.shared.image_io import encode_png, read_image

    _, digits = mnist
    files = [throughput.input_png(digit) for digit in digits[:1000]]
    assert sum(map(len, files)) == 252_815  # libpng, no filter, run-length deflate: 252.8 bytes a digit
    assert sum(len(encode_png(digit)) for digit in digits[:1000]) != 252_815  # the receiver's differs
    (tmp_path / "digit.png").write_bytes(files[7])
    np.testing.assert_array_equal(read_image(tmp_path / "digit.png", (28, 28)), digits[7])


def test_every_run_first_reads_its_inputs_into_the_page_cache(tmp_path, monkeypatch):
    """Whichever system ran first on an input read it from the disk, and the other found it cached."""
    folder = tmp_path / "png-3"
    folder.mkdir()
    for i, size in enumerate((10, 250, 4097)):
        (folder / f"{i:05d}.png").write_bytes(bytes(size))
    array = tmp_path / "digits-3.npz"
    array.write_bytes(bytes(1000))
    assert throughput.warm_inputs(folder) == 10 + 250 + 4097
    assert throughput.warm_inputs(array) == 1000

    warmed = []

    class Started(Exception):
        pass

    def receiver(*args, **kwargs):
        raise Started

    monkeypatch.setattr(throughput, "warm_inputs", warmed.append)
    monkeypatch.setattr(throughput, "Receiver", receiver)
    for system in ("latentlink", "baseline"):
        try:
            throughput.run_once(system, folder, "folder 3", "loopback", tmp_path, tmp_path / "models")
        except Started:
            pass
    assert warmed == [folder, folder]  # before the receiver starts


def test_the_runs_wait_for_file_creation_to_take_a_steady_time():
    """After a full run's outputs are deleted, ext4 with discard creates files several times slower for minutes."""
    assert not throughput.steady([12.0, 14.0])
    assert not throughput.steady([48.0, 85.0, 188.0, 274.0])  # getting worse
    assert not throughput.steady([274.0, 12.4, 11.8, 15.1, 30.0])
    assert throughput.steady([274.0, 12.4, 11.8, 15.1])
    assert throughput.steady([30.0, 28.0, 29.0])  # a slower disk, steadily
    assert not throughput.steady([112.0, 110.0, 115.0])  # steadily busy: still trimming
