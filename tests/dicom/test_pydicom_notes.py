"""pydicom's warnings and log records become notes (report warnings), never stderr."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pydicom
import pytest

from tests.dicom.loader_factory import SeriesRecipe, write_series
from triage.dicom.pydicom_notes import capture_pydicom, redact
from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.ingest.config import IngestConfig
from triage.ingest.study import ingest_study

IMPLICIT_NOTE = "Expected explicit VR, but found implicit VR - using implicit VR for reading"


def _implicit_body(path: Path) -> None:
    """Rewrite the data set of an explicit-VR file in implicit VR, its meta unchanged, as
    in pydicom's SC_rgb_jpeg.dcm: pydicom reads it, and says so."""
    ds = pydicom.dcmread(path)
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, force_encoding=True)


def test_capture_collects_warnings_and_log_records(capfd: pytest.CaptureFixture,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = pydicom.data.get_testdata_file("SC_rgb_jpeg.dcm")
    with capture_pydicom() as notes:
        pydicom.dcmread(path)
    assert notes == [IMPLICIT_NOTE]
    assert "pydicom" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]


def test_other_libraries_warnings_pass_through() -> None:
    with pytest.warns(UserWarning, match="not pydicom"), capture_pydicom() as notes:
        warnings.warn("not pydicom", UserWarning, stacklevel=1)
    assert notes == []


def test_quoted_values_are_redacted() -> None:
    assert redact("Invalid value for VR PN: 'DOE^JANE' or b'\\x00' \"x\"") == (
        "Invalid value for VR PN: '…' or '…' '…'")


def test_scan_keeps_pydicom_off_stderr(tmp_path: Path, capfd: pytest.CaptureFixture,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "a.dcm").write_bytes(
        Path(pydicom.data.get_testdata_file("SC_rgb_jpeg.dcm")).read_bytes())
    scan = scan_export(tmp_path, workers=1)
    assert scan.records[0].error is None
    assert "pydicom" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]


def test_ingest_turns_pydicom_warnings_into_report_warnings(
        tmp_path: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    written = write_series(tmp_path / "export", SeriesRecipe(n_slices=4, rows=16, cols=16))
    _implicit_body(written.paths[1])
    (study,) = group_studies(scan_export(tmp_path / "export", workers=1))
    config = IngestConfig.from_dict({"selection": {"min_slices": 2}, "preprocess": {
        "target_spacing": [8.0, 8.0, 8.0], "target_shape": [8, 8, 4]}})
    report = ingest_study(study, config, tmp_path / "cache").report
    assert report.status.value == "ok", report.reasons
    assert f"pydicom: {IMPLICIT_NOTE}" in report.warnings
    assert "pydicom" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
