"""The DICOMweb query: filters checked before any request, and every study found, also from
a server that caps its answers (a real Orthanc with ``LimitFindResults``)."""

from __future__ import annotations

import io
import logging
from datetime import date, timedelta

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from triage.cli import main
from triage.errors import ConfigError
from triage.pacs.dicomweb import DicomwebSource, StudyFilter

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("uids", [("",), ("1.2.3", ""), ("*",), ("1.2..3",), (".1.2",),
                                  ("1.2.",), ("1.2.3a",), ("1." + "2" * 63,)])
def test_a_study_uid_that_is_not_a_dicom_uid_is_refused(uids):
    with pytest.raises(ConfigError, match=r"^--study-uid must be a DICOM UID .*got '"):
        StudyFilter(study_uids=uids)


@pytest.mark.parametrize("dates, why", [
    ("20241301", "'20241301' is not a calendar date"),
    ("20230229-", "'20230229' is not a calendar date"),
    ("20240131-20231201", "the earlier date first; got '20240131-20231201' "
                          r"\(give 20231201-20240131\)"),
    ("-", "got '-'"),
    ("2024", "got '2024'"),
])
def test_a_study_date_that_is_no_date_range_is_refused(dates, why):
    with pytest.raises(ConfigError, match=r"^--study-date must be YYYYMMDD-YYYYMMDD .*" + why):
        StudyFilter(study_date=dates)


@pytest.mark.parametrize("dates", ["20240229", "20231201-20240131", "-20240131",
                                   "20240101-", "20240101-20240101"])
def test_date_ranges_that_are_accepted(dates):
    assert StudyFilter(study_date=dates).query() == {"StudyDate": dates}


@pytest.mark.parametrize("option", [["--study-uid", ""], ["--study-uid", "1.2.3",
                                                         "--study-uid", ""],
                                    ["--study-uid", "*"], ["--study-date", "20241301"]])
def test_bad_filters_are_one_line_usage_errors(option, tmp_path, capsys):
    """Before any request: the URL is not even reachable."""
    code = main(["run", "http://127.0.0.1:9/dicom-web", "--model", str(tmp_path / "m"),
                 "--out", str(tmp_path / "o"), *option])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {option[-2]} must be") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def _tiny_study(n: int, day: date) -> tuple[str, bytes]:
    """A header-only CT instance, its own study (what QIDO-RS lists is all that counts):
    its Study Instance UID and bytes."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CT_IMAGE
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.{n + 1}"
    ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ds.StudyInstanceUID}.1.1"
    ds.Modality, ds.StudyDate, ds.PatientID = "CT", day.strftime("%Y%m%d"), f"P{n}"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return ds.StudyInstanceUID, buffer.getvalue()


def _store(orthanc, days: dict[int, date]) -> dict[str, date]:
    stored = {}
    for n, day in days.items():
        uid, data = _tiny_study(n, day)
        orthanc.rest("/instances", data)
        stored[uid] = day
    return stored


def _found(orthanc, filters: StudyFilter) -> list[str]:
    uids = [r.study_uid for r in DicomwebSource(orthanc.dicomweb, filters).find()]
    assert len(uids) == len(set(uids))
    return uids


def test_a_server_capping_its_answers_still_gives_every_study(make_orthanc, caplog):
    """Orthanc with LimitFindResults 10 answers 11 studies to any search, and nothing past
    offset 11: the search is split by StudyDate until every study is found, and a warning
    names the cap. More studies on one day than the cap cannot be split: a warning names
    the day."""
    orthanc = make_orthanc(config={"LimitFindResults": 10})
    first = date(2024, 1, 1)  # 30 studies, two or three a day over 12 days
    stored = _store(orthanc, {n: first + timedelta(days=n * 2 // 5) for n in range(30)})
    caplog.set_level(logging.WARNING, logger="triage.pacs.dicomweb")
    assert sorted(_found(orthanc, StudyFilter(modality="CT"))) == sorted(stored)
    assert "caps its search answers at about 11 studies" in caplog.text
    assert sorted(_found(orthanc, StudyFilter(study_date="20240103-20240110"))) == sorted(
        u for u, d in stored.items() if date(2024, 1, 3) <= d <= date(2024, 1, 10))
    assert len(_found(orthanc, StudyFilter(limit=25))) == 25
    assert "some may be missing" not in caplog.text
    _store(orthanc, {n: date(2023, 6, 1) for n in range(30, 42)})  # 12 on one day
    assert len(_found(orthanc, StudyFilter())) == 30 + 11
    assert "held back studies of StudyDate 20230601" in caplog.text


def test_no_cap_warning_from_a_server_that_does_not_cap(orthanc, caplog):
    stored = _store(orthanc, {n: date(2024, 1, 1 + n) for n in range(3)})
    caplog.set_level(logging.WARNING, logger="triage.pacs.dicomweb")
    assert sorted(_found(orthanc, StudyFilter())) == sorted(stored)
    assert "caps" not in caplog.text and "fewer studies" not in caplog.text
