"""Where a session's images are: the report records the receiver of every acknowledgement, and says so."""

from __future__ import annotations

import json
from types import SimpleNamespace

from latentlink.sender.cli import _report_json, format_report
from latentlink.sender.report import SendReport, merge_reports

MODEL = SimpleNamespace(name="rd-q4", decoder=SimpleNamespace(digest="ab" * 32))


def _report(session: str, placements: list[tuple[str, int]], first: int = 0) -> SendReport:
    report = SendReport(session=session, session_dir=session)
    index = first
    for receiver, count in placements:
        report.receiver = receiver  # a handshake with this receiver
        for _ in range(count):
            report.record_written([f"img{index:03d}.png"], [f"{session}/img{index:03d}.png"])
            index += 1
    report.images = report.sent = index - first
    return report


def test_a_failover_is_reported_by_receiver_and_name():
    report = _report("run", [("rx-a", 3), ("rx-b", 2)])
    assert report.moved and report.placement() == {
        "rx-a": ["img000.png", "img001.png", "img002.png"],
        "rx-b": ["img003.png", "img004.png"],
    }
    text = format_report(report, "proxy:443", MODEL)
    assert "after a failover, this session's images are on 2 receivers" in text
    assert '    3 on rx-a in "run/"' in text and '    2 on rx-b in "run/"' in text
    summary = json.loads(_report_json(report, "proxy:443", MODEL))
    assert summary["receivers"] == {"rx-a": 3, "rx-b": 2}
    assert summary["written_on"] == report.placement()


def test_one_receiver_is_named_and_no_names_are_listed():
    report = _report("run", [("rx-a", 4)])
    assert not report.moved
    assert 'reconstructions are in "run/" under its output folder on rx-a' in format_report(report, "t", MODEL)
    summary = json.loads(_report_json(report, "t", MODEL))
    assert summary["receivers"] == {"rx-a": 4} and summary["written_on"] == {}


def test_parallel_streams_on_different_receivers_are_not_a_failover():
    merged = merge_reports([_report("job.1", [("rx-a", 2)]), _report("job.2", [("rx-b", 2)], first=2)], "job")
    assert not merged.moved
    summary = json.loads(_report_json(merged, "t", MODEL))
    assert summary["written_on"] == {} and [s["receivers"] for s in summary["streams"]] == [{"rx-a": 2}, {"rx-b": 2}]
    assert 'written into "job.1/" on rx-a' in format_report(merged, "t", MODEL)


def test_input_bytes_count_each_image_read_once():
    """A reconnect reads the unacknowledged images again: their inputs are counted once."""
    first = SendReport(images=3)
    first.record_read(["a.png", "b.png"], [100, 200])
    first.record_read(["b.png", "c.png"], [200, 50])  # b read again, after a reconnect
    assert first.input_bytes == 350
    second = SendReport(images=1)
    second.record_read(["d.png"], [7])
    merged = merge_reports([first, second], "run")
    assert merged.input_bytes == 357 and merged.images == 4
    text = format_report(merged, "rx:1", MODEL)
    assert "(input files: 89 B per image)" in text  # 357 B over the 4 images read
