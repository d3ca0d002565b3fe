"""SRs of studies whose headers DICOM refuses, by `triage run` into a real Orthanc: the
values are left out of the SR, never logged, and an SR that cannot be built is its study's
failure alone."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom import config

from tests.pacs.conftest import study_uids

BIRTH_DATE = "1901-02-03"  # how some archives write 19010203: not a DICOM DA


def _odd_headers(export: Path, sexes: dict[str, str]) -> None:
    """Give the studies of `sexes` that PatientSex, and the first of them the birth date
    written ISO-style, as real archives hold them."""
    first = min(sexes)
    for path in sorted(p for p in export.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # noqa: BLE001, S112 - manifest, ground truth
            continue
        if ds.StudyInstanceUID in sexes:
            ds.PatientSex = sexes[ds.StudyInstanceUID]
            if ds.StudyInstanceUID == first:
                with config.disable_value_validation():  # not a DA: the point here
                    ds.PatientBirthDate = BIRTH_DATE
            ds.save_as(path)


def _triage_run(orthanc, out: Path, tiny_model, rules: Path, tmp_path: Path
                ) -> subprocess.CompletedProcess:
    """`triage run` as a user runs it: its stderr is everything it logs."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "triage", "run", orthanc.dicomweb, "--model",
         str(tiny_model.bundle_dir), "--out", str(out), "--rules", str(rules), "--device",
         "cpu", "--workers", "1", "--json", "--report-to", orthanc.dicomweb],
        env=env, capture_output=True, text=True, timeout=600, check=False)


def test_srs_leave_out_what_dicom_refuses_and_a_broken_one_stops_no_other(
        orthanc, pacs_export, tiny_model, rules_path, tmp_path):
    """PatientSex U and X (highdicom takes M, F, O) and a birth date 1901-02-03: every SR is
    stored without those values (none invented), the birth date reaches no log; then, the
    header record of one study broken, its SR alone is not sent (one line naming the study
    and the error type) and the others are."""
    export = tmp_path / "export"
    shutil.copytree(pacs_export, export)
    uids = study_uids(export)
    odd = {uids[0]: "U", uids[1]: "X"}
    _odd_headers(export, odd)
    patients = {}
    for path in sorted(p for p in export.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - manifest, ground truth
            continue
        patients.setdefault(ds.StudyInstanceUID, ds)
    orthanc.upload_export(export)
    out = tmp_path / "out"
    done = _triage_run(orthanc, out, tiny_model, rules_path, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["reports"] == {"sent": 4, "rejected": 0, "skipped": 0}
    assert BIRTH_DATE not in done.stderr and "Traceback" not in done.stderr, done.stderr
    for uid in uids:  # logs name studies by UID, never the patient
        ds = patients[uid]
        assert str(ds.PatientID) not in done.stderr
        assert str(ds.PatientName) not in done.stderr
    assert f"Study {uids[0]}: PatientBirthDate, PatientSex left out of its SR" in done.stderr
    srs = {ds.StudyInstanceUID: ds for ds in (pydicom.dcmread(io.BytesIO(b)) for b in
                                              orthanc.instances_of_modality("SR"))}
    assert sorted(srs) == uids
    for uid in odd:
        assert srs[uid].PatientSex == "" and srs[uid].PatientID, srs[uid]
    assert srs[uids[0]].PatientBirthDate == ""
    assert srs[uids[2]].PatientSex in ("M", "F", "O")  # what was valid is copied

    broken = out / "headers" / f"{uids[2]}.json"
    record = json.loads(broken.read_text(encoding="utf-8"))
    record["series"] = {uid: [["no pair"]] for uid in record["series"]}
    broken.write_text(json.dumps(record), encoding="utf-8")
    again = _triage_run(orthanc, out, tiny_model, rules_path, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["reports"] == {"sent": 3, "rejected": 1, "skipped": 0}
    lines = [line for line in again.stderr.splitlines() if "could not be built" in line]
    assert len(lines) == 1 and lines[0].endswith(
        f"No SR for study {uids[2]}: it could not be built (ValueError)."), again.stderr
    assert "Traceback" not in again.stderr
