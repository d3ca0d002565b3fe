"""Manifest schema validation: every bad row reported, with line numbers and clear reasons."""

from __future__ import annotations

import pandas as pd
import pytest

from triage.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestIssue,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from triage.errors import ManifestError

GOOD = [
    {"study_uid": "1.2.826.0.1.1", "patient_key": "pk-0001", "label": "1",
     "device_group": "acme-ct1", "split": "train"},
    {"study_uid": "1.2.826.0.1.2", "patient_key": "pk-0001", "label": "0",
     "device_group": "acme-ct1", "split": "train"},
    {"study_uid": "1.2.826.0.1.3", "patient_key": "pk-0002", "label": "0",
     "device_group": "borealis-x9", "split": "test"},
]


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=str)


def test_valid_manifest_has_no_issues():
    assert validate_manifest(frame(GOOD)) == []


def test_round_trip_keeps_rows_and_casts_label(tmp_path):
    path = write_manifest(frame(GOOD), tmp_path / "m.csv")
    df = read_manifest(path)
    assert list(df.columns[:5]) == list(MANIFEST_COLUMNS[:5])
    assert df["label"].tolist() == [1, 0, 0]
    assert df["study_uid"].tolist() == [r["study_uid"] for r in GOOD]


def test_every_bad_row_is_reported_with_its_line():
    rows = [dict(r) for r in GOOD]
    rows[0]["label"] = "2"                       # line 2
    rows[1]["study_uid"] = "1.2.abc"             # line 3
    rows[2]["split"] = "training"                # line 4
    rows.append(dict(GOOD[2], study_uid="1.2.826.0.1.3"))  # line 5: duplicate of line 4's UID
    messages = [str(i) for i in validate_manifest(frame(rows))]
    assert "line 2, column 'label': '2' is not 0 or 1." in messages
    assert ("line 3, column 'study_uid': '1.2.abc' is not a DICOM UID "
            "(digits and dots, at most 64).") in messages
    assert any(m.startswith("line 4, column 'split': 'training' is not one of") for m in messages)
    assert "line 5, column 'study_uid': '1.2.826.0.1.3' already appears on line 4." in messages


def test_patient_in_two_splits_is_an_error():
    rows = [dict(r) for r in GOOD]
    rows[1]["split"] = "test"
    issues = validate_manifest(frame(rows))
    assert [str(i) for i in issues] == [
        "line 3, column 'split': patient_key on line 2 is in split 'train' but here in 'test': "
        "splits are by patient."
    ]


def test_missing_and_misspelled_columns_suggest_the_right_name():
    df = frame(GOOD).rename(columns={"label": "lable"})
    messages = [str(i) for i in validate_manifest(df)]
    assert "header, column 'label': required column 'label' is missing." in messages
    assert any("unknown column 'lable'. Did you mean 'label'?" in m for m in messages)


def test_extra_columns_with_prefix_are_allowed():
    df = frame(GOOD).assign(gt_n_lesions="1", meta_note="x")
    assert validate_manifest(df) == []


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("device_group", "Acme CT1", "'Acme CT1' is not a lowercase slug like 'vendor-model'."),
        ("patient_key", "x", "is not a pseudonymous key of 4-64 characters [A-Za-z0-9._-]."),
        ("study_uid", "1.02.3", "'1.02.3' is not a DICOM UID (digits and dots, at most 64)."),
        ("study_uid", "", "is empty."),
    ],
)
def test_single_field_errors(column, value, expected):
    rows = [dict(GOOD[0], **{column: value})]
    assert validate_manifest(frame(rows)) == [ManifestIssue(2, column, expected)]


def test_read_manifest_raises_with_all_issues(tmp_path):
    path = tmp_path / "bad.csv"
    frame([dict(GOOD[0], label="yes"), dict(GOOD[1], split="nope")]).to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"has 2 problem\(s\)") as info:
        read_manifest(path)
    assert len(info.value.issues) == 2
    assert str(path) in str(info.value)


def test_missing_file_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(MANIFEST_COLUMNS[:5]) + "\n")
    with pytest.raises(ManifestError, match="the manifest has no rows"):
        read_manifest(empty)


def test_write_refuses_invalid_manifest_and_leaves_no_file(tmp_path):
    target = tmp_path / "m.csv"
    with pytest.raises(ManifestError):
        write_manifest(frame([dict(GOOD[0], label="7")]), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_shipped_example_manifest_is_valid():
    from pathlib import Path

    df = read_manifest(Path(__file__).parents[2] / "data_manifests" / "example.csv")
    assert len(df) == 5 and set(df["split"]) == {"train", "val", "calib", "test"}
