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


@pytest.mark.parametrize("line", [b"{}", b"[1, 2]", b'{"study_uid": "x", "priority": "high"}'])
def test_json_that_is_no_row_is_a_torn_last_line_or_one_error_before_it(tmp_path, line):
    """Valid JSON that is no row crashed every later run with a TypeError traceback."""
    path = tmp_path / "journal.jsonl"
    Journal(path, IDENTITY).append(_rows("a", "b"))
    good = path.read_bytes()
    path.write_bytes(good + line + b"\n")
    journal = Journal(path, IDENTITY)
    assert journal.torn and list(journal.rows) == ["a", "b"] and path.read_bytes() == good
    journal.close()
    lines = good.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], line, *lines[1:]]))
    with pytest.raises(JournalError, match="line 2 is not a worklist row"):
        Journal(path, IDENTITY)


LOCKER = """
import sys, time
from triage.run.journal import Journal
journal = Journal(sys.argv[1], {"model_created_utc": "2026-01-01T00:00:00+00:00",
                               "rules_version": "1"})
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    """Two runs on one --out each redid every study, and could both write the header."""
    import subprocess
    import sys

    from triage.errors import ConfigError

    path = tmp_path / "journal.jsonl"
    other = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=r"is in use by another triage process"):
            Journal(path, IDENTITY)
    finally:
        other.kill()
        other.wait()
    journal = Journal(path, IDENTITY)  # the dead process's lock went with it
    Journal(path, IDENTITY).close()  # within one process the lock is shared
    journal.append(_rows("a"))
    assert list(Journal(path, IDENTITY).rows) == ["a"]


def test_temporary_files_of_a_killed_run_are_removed_when_it_resumes(tmp_path):
    (tmp_path / "cache" / "volume_qc").mkdir(parents=True)
    stale = [tmp_path / ".worklist.csv.k2j4_x9a.tmp",
             tmp_path / "cache" / "volume_qc" / ".abc.json.zz8y7x6w.tmp"]
    for path in stale:
        path.write_text("half")
    kept = tmp_path / "notes.tmp"  # not one of atomic_open's names
    kept.write_text("mine")
    Journal(tmp_path / "journal.jsonl", IDENTITY)
    assert not any(p.exists() for p in stale) and kept.exists()
