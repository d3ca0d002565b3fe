"""The run journal: durable lines, a torn last line dropped, another run's journal refused."""

from __future__ import annotations

import os

import pytest

from triage.run.journal import Journal, JournalError
from triage.run.worklist import WorklistRow

IDENTITY = {"model_created_utc": "2026-01-01T00:00:00+00:00", "rules_version": "1"}


def _rows(*uids: str) -> list[WorklistRow]:
    return [WorklistRow(study_uid=u, route="review", priority=4, reasons='a, "b"')
            for u in uids]


def test_rows_survive_a_reopen_in_finish_order(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, IDENTITY)
    journal.append(_rows("b", "a"))
    journal.append(_rows("c"))
    again = Journal(path, IDENTITY)
    assert list(again.rows) == ["b", "a", "c"]
    assert again.rows["a"] == _rows("a")[0]
    assert "c" in again and "d" not in again
    assert again.order() == {"b": 0, "a": 1, "c": 2}
    assert not again.torn


@pytest.mark.parametrize("tail", [b'{"study_uid": "d", "rou', b'{"study_uid": "d"}',
                                  b"\x00\x00\x00\x00"])
def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path, tail):
    path = tmp_path / "journal.jsonl"
    Journal(path, IDENTITY).append(_rows("a", "b"))
    good = path.read_bytes()
    path.write_bytes(good + tail)
    journal = Journal(path, IDENTITY)
    assert journal.torn and list(journal.rows) == ["a", "b"]
    assert path.read_bytes() == good  # the next append starts on a fresh line
    journal.append(_rows("d"))
    assert list(Journal(path, IDENTITY).rows) == ["a", "b", "d"]


def test_a_torn_header_starts_afresh(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"journal": 1, "mod')
    journal = Journal(path, IDENTITY)
    assert journal.torn and not journal.rows
    assert len(Journal(path, IDENTITY).rows) == 0


def test_a_journal_of_another_model_or_rules_is_refused(tmp_path):
    path = tmp_path / "journal.jsonl"
    Journal(path, IDENTITY).append(_rows("a"))
    with pytest.raises(JournalError, match=r"another run configuration \(rules_version "
                                           r"differ\).*fresh --out folder"):
        Journal(path, IDENTITY | {"rules_version": "2"})


def test_damage_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "journal.jsonl"
    Journal(path, IDENTITY).append(_rows("a", "b"))
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match="line 2 is not valid JSON"):
        Journal(path, IDENTITY)


def test_a_row_naming_a_latin1_file_survives_a_reopen(tmp_path):
    name = os.fsdecode("MÜLLER^HANS".encode("latin-1"))  # lone surrogate, as os.scandir gives
    row = WorklistRow(study_uid=f"unreadable:{name}/IM1", route="failed",
                      reasons=f"/export/{name}/IM1: corrupt")
    journal = Journal(tmp_path / "journal.jsonl", IDENTITY)
    journal.append([row])
    assert Journal(tmp_path / "journal.jsonl", IDENTITY).rows == {row.study_uid: row}


def test_rows_failed_by_the_machine_in_an_older_version_are_redone(tmp_path):
    path = tmp_path / "journal.jsonl"
    Journal(path, IDENTITY).append([
        WorklistRow(study_uid="full", route="failed", priority=9,
                    reasons="internal error (OSError): [Errno 28] No space left on device"),
        WorklistRow(study_uid="gpu", route="failed", priority=9,
                    reasons="inference error (AssertionError): Torch not compiled with "
                            "CUDA enabled"),
        WorklistRow(study_uid="gap", route="failed", priority=9, reasons="slice gap"),
        *_rows("ok")])
    journal = Journal(path, IDENTITY)
    assert list(journal.rows) == ["gap", "ok"]
    assert "full" not in journal and "gpu" not in journal
