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
