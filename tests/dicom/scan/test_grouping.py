"""`group_studies`: one group per study, and never two patients merged into one study."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.dicom.loader_factory import STUDY, SeriesRecipe, write_series
from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.dicom.select.selection import StudyStatus, select_series
from triage.engines.runner import ingest_export
from triage.ingest.config import IngestConfig

SMALL = SeriesRecipe(n_slices=4, rows=16, cols=16)
PATIENTS = ("PAT-AAA-0001", "PAT-BBB-0002")


@pytest.fixture
def two_patients_one_study(tmp_path: Path) -> Path:
    """Two CT series of one Study Instance UID, each of a different patient."""
    root = tmp_path / "export"
    for name, patient in zip(("a", "b"), PATIENTS, strict=True):
        write_series(root, SMALL, name=name,
                     mutate=lambda _k, ds, patient=patient: setattr(ds, "PatientID", patient))
    return root


def test_patients_sharing_a_study_uid_are_split_and_failed(two_patients_one_study: Path
                                                           ) -> None:
    groups = group_studies(scan_export(two_patients_one_study, workers=1))
    assert [g.study_uid for g in groups] == [f"{STUDY.study_uid}#patient-1",
                                             f"{STUDY.study_uid}#patient-2"]
    assert sum(g.file_count for g in groups) == 8
    for group in groups:
        patients = {r.patient_id for rs in group.series.values() for r in rs}
        assert len(patients) == 1 and len(group.series) == 1
        selection = select_series(group)
        assert selection.status is StudyStatus.PATIENT_CONFLICT and selection.chosen is None
        assert selection.reason.startswith("instances of this study disagree on PatientID")
        assert not any(p in selection.reason for p in PATIENTS)


def test_ingest_reports_every_patient_and_clears_none(
        two_patients_one_study: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = IngestConfig.from_dict({"selection": {"min_slices": 2}})
    result = ingest_export(two_patients_one_study, tmp_path / "out", config, workers=1)
    assert len(result.reports) == 2
    assert {r.status.value for r in result.reports} == {"failed"}
    assert {r.stage for r in result.reports} == {"selection"}
    assert {r.n_files for r in result.reports} == {4}
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "out").glob("*.*")
                      if p.is_file())
    assert "disagree on PatientID" in written
    for patient in PATIENTS:
        assert patient not in written and patient not in caplog.text


def test_a_study_whose_files_agree_is_one_group(tmp_path: Path) -> None:
    root = tmp_path / "export"
    for name in ("a", "b"):
        write_series(root, SMALL, name=name)
    groups = group_studies(scan_export(root, workers=1))
    assert [g.study_uid for g in groups] == [STUDY.study_uid]
    assert groups[0].conflict is None and len(groups[0].series) == 2
