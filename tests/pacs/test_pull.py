"""`triage run http://.../dicom-web`: pull from a real Orthanc, report back as SRs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pydicom

from tests.pacs.conftest import study_uids
from triage.cli import main
from triage.pacs.sr import read_sr


def _worklist(out: Path) -> list[dict]:
    with open(out / "worklist.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _run(source: str, out: Path, model: str, rules: Path, *extra: str) -> int:
    return main(["run", source, "--model", model, "--out", str(out), "--rules", str(rules),
                 "--device", "cpu", "--json", *extra])


def test_pull_and_report_back_by_stow(orthanc, pacs_export, tiny_model, rules_path,
                                      tmp_path, dciodvfy, capsys):
    orthanc.upload_export(pacs_export)
    uids = study_uids(pacs_export)
    out = tmp_path / "out"
    code = _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path,
                "--modality", "CT", "--report-to", orthanc.dicomweb)
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = _worklist(out)
    assert [r["study_uid"] for r in rows] == uids
    assert summary["reports"] == {"sent": len(uids), "rejected": 0, "skipped": 0}
    assert not any((out / "staging").iterdir()) if (out / "staging").exists() else True
    srs = [pydicom.dcmread(__import__("io").BytesIO(b)) for b in
           orthanc.instances_of_modality("SR")]
    assert sorted(ds.StudyInstanceUID for ds in srs) == uids  # one SR per study
    by_study = {r["study_uid"]: r for r in rows}
    for ds in srs:
        parsed = read_sr(ds)
        row = by_study[ds.StudyInstanceUID]
        assert parsed["route"] == row["route"]
        if row["p_calibrated"]:
            assert abs(parsed["p-calibrated"] - float(row["p_calibrated"])) < 1e-6
        assert parsed["rule-ids"] == row["rule_ids"]
    path = tmp_path / "sr.dcm"
    srs[0].save_as(path)
    check = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    assert "Error" not in check.stdout + check.stderr, check.stderr

    # a rerun resumes from the journal and stores the same SRs again: no duplicate
    assert _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path,
                "--report-to", orthanc.dicomweb) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == len(uids)
    assert len(orthanc.instances_of_modality("SR")) == len(uids)


def test_filters_and_a_study_the_pacs_refuses(make_orthanc, pacs_export, tiny_model,
                                               rules_path, tmp_path, capsys):
    uids = study_uids(pacs_export)
    lost = uids[0]
    orthanc = make_orthanc(refuse_studies=(lost,))  # lists it, answers 403 to WADO-RS
    orthanc.upload_export(pacs_export)
    out = tmp_path / "out"
    code = _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path,
                "--study-uid", lost, "--study-uid", uids[1], "--limit", "5")
    capsys.readouterr()
    assert code == 0
    rows = {r["study_uid"]: r for r in _worklist(out)}
    assert sorted(rows) == sorted([lost, uids[1]])
    assert rows[lost]["route"] == "failed"
    assert "HTTP 403" in rows[lost]["reasons"], rows[lost]["reasons"]
    assert rows[uids[1]]["route"] != "failed"
    shutil.rmtree(out)
    assert _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path,
                "--study-date", "19000101-19000102") == 1  # nothing in that range
    assert ("The DICOMweb query (StudyDate=19000101-19000102) found no study."
            in capsys.readouterr().err)


def test_filters_of_a_folder_are_usage_errors(pacs_export, tiny_model, rules_path,
                                               tmp_path, capsys):
    assert _run(str(pacs_export), tmp_path / "o", str(tiny_model.bundle_dir), rules_path,
                "--modality", "CT") == 2
    assert "DICOMweb" in capsys.readouterr().err
    assert _run("http://127.0.0.1:9/dicom-web", tmp_path / "o", str(tiny_model.bundle_dir),
                rules_path, "--study-date", "2020") == 2
    assert _run("http://127.0.0.1:9/dicom-web", tmp_path / "o", str(tiny_model.bundle_dir),
                rules_path, "--report-to", "ftp://x") == 2


def test_report_by_c_store(make_orthanc, pacs_export, tiny_model, rules_path, tmp_path,
                           capsys):
    orthanc = make_orthanc(dicom=True)
    orthanc.upload_export(pacs_export)
    out = tmp_path / "out"
    target = f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    assert _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path, "--limit", "2",
                "--report-to", target) == 0
    assert json.loads(capsys.readouterr().out)["reports"]["sent"] == 2
    srs = orthanc.instances_of_modality("SR")
    assert len(srs) == 2
    assert {r["study_uid"] for r in _worklist(out)} == {
        pydicom.dcmread(__import__("io").BytesIO(b)).StudyInstanceUID for b in srs}


def test_pacs_killed_mid_run_then_resumed(orthanc, pacs_export, tiny_model, rules_path,
                                          tmp_path, capsys, monkeypatch):
    """The PACS dies after the first study: the run stops (exit 3) without failing any
    study; once it is back, the same command resumes and finishes."""
    from triage.pacs import dicomweb
    from triage.pacs.retry import Backoff

    orthanc.upload_export(pacs_export)
    uids = study_uids(pacs_export)
    monkeypatch.setattr(dicomweb, "Backoff", lambda: Backoff(attempts=2, first_wait=0.1))
    real_stage = dicomweb.DicomwebSource.stage
    calls = []

    def stage_then_die(self, study, folder):
        calls.append(study.study_uid)
        if len(calls) == 2:
            orthanc.stop()
        return real_stage(self, study, folder)

    monkeypatch.setattr(dicomweb.DicomwebSource, "stage", stage_then_die)
    out = tmp_path / "out"
    assert _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path) == 3
    assert "rerun" in capsys.readouterr().err
    from triage.run.journal import read_journal

    _, journaled = read_journal(out / "journal.jsonl")
    assert list(journaled) == uids[:1]
    assert all(r.route != "failed" for r in journaled.values())
    monkeypatch.setattr(dicomweb.DicomwebSource, "stage", real_stage)
    orthanc.start()
    assert _run(orthanc.dicomweb, out, str(tiny_model.bundle_dir), rules_path) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] == 1 and summary["studies"] == len(uids)


def test_multipart_parts_split_as_sent():
    """The WADO-RS multipart answer is split into the parts' bytes (a preamble, a part
    holding CRLFs, quoted boundary), nothing parsed."""
    import pytest

    from triage.pacs.dicomweb import _multipart_parts

    body = (b"--XX\r\nContent-Type: application/dicom\r\n\r\nAB\r\n\r\nC\r\n"
            b"--XX\r\nContent-Type: application/dicom\r\n\r\nDEF\r\n--XX--\r\n")
    kind = 'multipart/related; type="application/dicom"; boundary='
    assert _multipart_parts(kind + "XX", body) == [b"AB\r\n\r\nC", b"DEF"]
    assert _multipart_parts(kind + '"XX"', b"pre\r\n" + body) == [b"AB\r\n\r\nC", b"DEF"]
    with pytest.raises(ValueError):
        _multipart_parts("application/dicom", body)
