"""The receiver's session journal: the latest record of a name wins, a torn record is ignored."""

from __future__ import annotations

from pathlib import Path

from latentlink.receiver.journal import SessionJournal


def test_latest_record_per_name_and_torn_tail(tmp_path: Path):
    journal = SessionJournal(tmp_path, "s")
    assert journal.durable_keys() == b""
    journal.record(["a.png", "b.png"], [b"A" * 8, b"B" * 8])
    journal.record(["a.png"], [b"a" * 8])  # a.png rewritten with other content
    assert sorted(journal.durable_keys()[i : i + 8] for i in range(0, 16, 8)) == [b"B" * 8, b"a" * 8]
    with open(journal.path, "ab") as handle:
        handle.write(b"torn")  # a crash in the middle of a record
    assert len(journal.durable_keys()) == 16
    assert journal.path.parent.name == ".journals"  # beside the session folders, not among the images


def test_a_journal_folder_removed_during_a_session_is_made_again(tmp_path: Path):
    import shutil

    journal = SessionJournal(tmp_path, "s")
    journal.record(["a.png"], [b"A" * 8])
    shutil.rmtree(journal.path.parent)  # someone cleaned the output folder up while the session ran
    journal.record(["b.png"], [b"B" * 8])
    assert journal.durable_keys() == b"B" * 8
