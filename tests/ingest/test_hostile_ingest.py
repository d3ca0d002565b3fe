"""Hostile exports end to end: non-UTF-8 folder names, patient-named export folders,
resource caps from the config, links out of the export."""

from __future__ import annotations

import json
import os

import pytest

from tests.dicom.factories import (
    ACME,
    build_dicomdir_export,
    huge_matrix,
    second_at_first_position,
    short_pixel_data,
    study_header,
    write_ct_series,
)
from triage.engines.runner import REPORT_NAME, SUMMARY_NAME, ingest_export
from triage.errors import ConfigError
from triage.ingest.config import IngestConfig
from triage.ingest.report import read_report

SMALL = {"selection": {"min_slices": 4},
         "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [8, 8, 4]}}
LATIN1 = os.fsdecode("MÜLLER^HANS".encode("latin-1"))


def test_a_latin1_folder_name_is_reported_and_reruns_work(tmp_path):
    root = tmp_path / "export"
    folder = root / LATIN1
    write_ct_series(folder, study_header("latin"), ACME, "latin", slices=6)
    (folder / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 50)
    assert os.fsencode(folder).endswith(b"M\xdcLLER^HANS")
    config = IngestConfig.from_dict(SMALL)
    for _ in range(2):  # every rerun crashed the same way
        result = ingest_export(root, tmp_path / "out", config, workers=1)
        rows = read_report(result.report_path)
        assert sorted(r["status"] for r in rows) == ["failed", "ok"]
        failed = next(r for r in rows if r["status"] == "failed")
        assert failed["study_uid"] == "unreadable:M\\xdcLLER^HANS/junk.dcm"


def test_a_patient_named_export_folder_stays_out_of_summary_and_report(tmp_path):
    export = build_dicomdir_export(tmp_path / "DOE^JOHN_1961_export")
    images = sorted(p for p in export.root.rglob("IM*") if p.is_file())
    images[-1].unlink()  # a DICOMDIR note and a missing-file row
    images[0].write_bytes(images[0].read_bytes()[:400])  # a truncated file
    result = ingest_export(export.root, tmp_path / "out", IngestConfig.from_dict(SMALL),
                           workers=1)
    summary = (tmp_path / "out" / SUMMARY_NAME).read_text()
    report = (tmp_path / "out" / REPORT_NAME).read_text()
    assert json.loads(summary)["scan_notes"] == ["DICOMDIR: lists 1 file(s) missing on disk"]
    assert "DOE^JOHN" not in summary and "DOE^JOHN" not in report
    assert {r.status for r in result.reports} == {"failed"}


def test_a_series_directly_in_a_patient_named_export_root_is_named_without_its_path(tmp_path):
    export = tmp_path / "DOE^JANE_4711" / "flat"
    write_ct_series(export, study_header("flat"), ACME, "flat", slices=6,
                    edit=second_at_first_position)
    result = ingest_export(export, tmp_path / "out", IngestConfig.from_dict(SMALL), workers=1)
    (row,) = read_report(result.report_path)
    assert (row["stage"], row["verdict"]) == ("load", "duplicates")
    assert row["reasons"].startswith("(export root): 1 slice position(s) hold more than one "
                                     "image")
    assert "DOE^JANE" not in (tmp_path / "out" / REPORT_NAME).read_text()


def test_an_unreadable_series_names_its_first_file_and_what_is_wrong(tmp_path):
    root = tmp_path / "DOE^JANE_4711"
    write_ct_series(root / "SE1", study_header("short"), ACME, "short", slices=6,
                    edit=short_pixel_data)
    write_ct_series(root / "SE2", study_header("huge"), ACME, "huge", slices=6,
                    edit=huge_matrix)
    result = ingest_export(root, tmp_path / "out", IngestConfig.from_dict(SMALL), workers=1)
    reasons = {r.study_uid: r.reasons for r in result.reports}
    assert reasons[study_header("short").study_uid].endswith(
        "all 6 file(s) unreadable (corrupt: 6), first SE1/IM0000.dcm: corrupt: pixel data "
        "has 1948 bytes but Rows, Columns, frames, samples and BitsAllocated need 2048")
    assert reasons[study_header("huge").study_uid].endswith(
        "all 6 file(s) unreadable (over-limit: 6), first SE2/IM0000.dcm: over limit: The "
        "header declares 65535x65535 pixels per frame (4,294,836,225), more than "
        "limits.max_frame_pixels=4,194,304, the file was not decoded. Raise the limit in the "
        "ingest config if such images are expected.")
    assert "DOE^JANE" not in (tmp_path / "out" / REPORT_NAME).read_text()


def test_a_study_over_the_configured_voxel_cap_gets_a_failed_row(tmp_path):
    root = tmp_path / "export"
    write_ct_series(root / "a", study_header("a"), ACME, "a", slices=6)
    write_ct_series(root / "b", study_header("b"), ACME, "b", slices=6, size=16)
    config = IngestConfig.from_dict({**SMALL, "limits": {"max_volume_voxels": 6 * 16 * 16}})
    result = ingest_export(root, tmp_path / "out", config, workers=1)
    assert len(read_report(result.report_path)) == 2
    failed = [r for r in result.reports if r.status == "failed"]
    assert len(failed) == 1 and failed[0].stage == "load"
    assert "more than limits.max_volume_voxels=1,536" in failed[0].reasons
    assert str(tmp_path) not in failed[0].reasons  # paths inside the export only
    assert json.loads((tmp_path / "out" / "ingest_config.json").read_text())["limits"][
        "max_volume_voxels"] == 1536


def test_links_out_of_the_export_are_counted_in_the_summary(tmp_path):
    root = tmp_path / "export"
    write_ct_series(root / "a", study_header("a"), ACME, "a", slices=6)
    write_ct_series(tmp_path / "host", study_header("h"), ACME, "h", slices=6)
    (root / "share").symlink_to(tmp_path / "host", target_is_directory=True)
    result = ingest_export(root, tmp_path / "out", IngestConfig.from_dict(SMALL), workers=1)
    assert len(result.reports) == 1
    assert result.summary["links_outside_export"] == 1


def test_the_shipped_limits_and_a_bad_value(tmp_path):
    assert IngestConfig.from_yaml().limits.max_frame_pixels == 2048 * 2048
    config = IngestConfig.from_yaml()
    assert IngestConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="invalid limits option: ResourceLimits.max_frames"):
        IngestConfig.from_dict({"limits": {"max_frames": -1}})
    with pytest.raises(ConfigError, match="max_frame"):
        IngestConfig.from_dict({"limits": {"max_frame": 1}})
    with pytest.raises(ConfigError, match="is a section of its own"):
        IngestConfig.from_dict({"load": {"limits": {}}})
