"""Spreadsheet-safe CSV cells (OWASP CSV injection) and the ingest report that uses them."""

from __future__ import annotations

import csv

import pytest

from triage.csv_cells import neutralize_cell, restore_cell, restore_row, safe_row
from triage.ingest.report import IngestStatus, StudyReport, read_report, write_report


@pytest.mark.parametrize("value", ["=1+1", "+1", "-2", "@A1", "\tx", "\rx", "'x", "''"])
def test_formula_starts_get_a_quote_and_come_back(value):
    assert neutralize_cell(value) == "'" + value
    assert restore_cell(neutralize_cell(value)) == value


@pytest.mark.parametrize("value", ["", "ACC1", "1.2.840", "a=b", " =x"])
def test_plain_text_is_unchanged(value):
    assert neutralize_cell(value) == value == restore_cell(value)


def test_rows_keep_numbers_in_numeric_columns_only():
    row = {"p": "-0.5", "note": "-0.5", "n": 3, "bad": "=1", "none": None}
    safe = safe_row(row, numeric={"p", "bad"})
    assert safe == {"p": "-0.5", "note": "'-0.5", "n": 3, "bad": "'=1", "none": None}
    assert restore_row({k: v for k, v in safe.items() if k != "n"}, numeric={"p", "bad"}) == {
        "p": "-0.5", "note": "-0.5", "bad": "=1", "none": None}


def test_ingest_report_cells_are_neutralized(tmp_path):
    row = StudyReport(study_uid="1.2.3", status=IngestStatus.FAILED, stage="load",
                      device_group="=cmd|' /C calc'!A0", n_files=-1,
                      reasons="-bad file", warnings="@x")
    path = write_report([row], tmp_path / "ingest_report.csv")
    with open(path, encoding="utf-8", newline="") as fh:
        cells = list(csv.DictReader(fh))[0]
    assert cells["device_group"] == "'=cmd|' /C calc'!A0"
    assert (cells["reasons"], cells["warnings"]) == ("'-bad file", "'@x")
    assert cells["n_files"] == "-1"  # an integer column stays a number
    back = read_report(path)[0]
    assert (back["device_group"], back["reasons"], back["warnings"]) == (
        row.device_group, row.reasons, row.warnings)


def test_training_reads_the_report_with_its_cells_restored(tmp_path):
    import pandas as pd

    from triage.data.dataset import resolve_samples

    ok = StudyReport(study_uid="1.2.3", status=IngestStatus.OK, cache_key="-key",
                     device_group="acme")
    bad = StudyReport(study_uid="1.2.4", status=IngestStatus.FAILED, reasons="-no pixels")
    write_report([ok, bad], tmp_path / "ingest_report.csv")
    manifest = pd.DataFrame({"study_uid": ["1.2.3", "1.2.4"], "patient_key": ["P1", "P2"],
                             "label": [0, 1], "device_group": ["acme", "acme"],
                             "split": ["train", "train"]})
    resolved = resolve_samples(manifest, tmp_path)
    assert [s.cache_key for s in resolved.samples] == ["-key"]
    assert resolved.excluded == [("1.2.4", "ingest failed: -no pixels")]
