"""Faults around the PACS paths, against a real Orthanc: a listener killed mid-study, an
association aborted mid-study, a corrupt instance pulled by DICOMweb, the PACS going down
while SRs are sent (by `triage run` and by the listener), retrievals cut off mid-body or
answered a gateway's 503 (by a small proxy in front of Orthanc)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config

from tests.pacs.conftest import study_uids
from tests.pacs.orthanc import free_port
from tests.pacs.proxy import BreakingProxy
from tests.pacs.scu import InProcessListener as _InProcess
from tests.pacs.scu import echo, send, wait, worklist
from triage.cli import main


@pytest.fixture(scope="module")
def studies(pacs_export) -> dict[str, list]:
    """The synthetic studies as datasets, by Study Instance UID, instances in file order."""
    found: dict[str, list] = {}
    for path in sorted(pacs_export.rglob("*")):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # noqa: BLE001, S112 - manifest, ground truth
            continue
        found.setdefault(ds.StudyInstanceUID, []).append(ds)
    return dict(sorted(found.items()))


def _sr_uids(orthanc) -> list[str]:
    return sorted(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID
                  for b in orthanc.instances_of_modality("SR"))


def _spooled(out: Path, uid: str) -> list[str]:
    return sorted(p.stem for p in (out / "spool" / uid).glob("*.dcm"))


def test_listener_killed_mid_study_loses_nothing(orthanc, studies, tiny_model, rules_path,
                                                 tmp_path):
    """SIGKILL after part of a study: what was acknowledged is in the spool after the
    restart, a kill's half-written file is gone, and the study is triaged once, complete
    (not the part spooled before the kill, as soon as the listener is back)."""
    uid, study = next(iter(studies.items()))
    port, out, stable = free_port(), tmp_path / "out", 3.0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "triage", "listen", "--model", str(tiny_model.bundle_dir),
               "--out", str(out), "--rules", str(rules_path), "--device", "cpu", "--port",
               str(port), "--stable-seconds", str(stable), "--report-to", orthanc.dicomweb]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        wait(lambda: echo(port) or proc.poll() is not None, 90, "C-ECHO")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        return proc

    proc = start()
    try:
        assert send(port, study[:4]) == [0] * 4
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _spooled(out, uid) == sorted(ds.SOPInstanceUID for ds in study[:4])
        # what a kill between writing and renaming leaves (never acknowledged)
        (out / "spool" / ".incoming" / "1.2.3.4.1.part").write_bytes(b"half an instance")
        time.sleep(stable + 0.5)  # the spooled part is older than --stable-seconds
        proc = start()
        assert send(port, study[4:]) == [0] * (len(study) - 4)  # the sender resumes
        wait(lambda: len(orthanc.instances_of_modality("SR")) >= 1 and uid in worklist(out),
             60, "the triage and its SR")
        time.sleep(stable + 2)  # room for a second, wrong triage
        assert len(orthanc.instances_of_modality("SR")) == 1
        assert _spooled(out, uid) == sorted(ds.SOPInstanceUID for ds in study)
        mark = (out / "spool" / uid / ".triaged").read_text(encoding="utf-8").split()
        assert len(mark) == len(study)
        assert not list((out / "spool" / ".incoming").iterdir())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_association_aborted_mid_study(studies, tiny_model, pacs_router, tmp_path):
    """The sender aborts after some instances: those are kept whole, the study is triaged
    once quiet, the listener serves on, and the rest triages the study anew."""
    from pynetdicom import AE

    # a compressed one (RLE, JPEG): modalities send them as they are stored
    uid, study = next((u, s) for u, s in studies.items()
                      if s[0].file_meta.TransferSyntaxUID.is_compressed)
    out = tmp_path / "out"
    with _InProcess(out, tiny_model, pacs_router) as peer:
        ae = AE(ae_title="SENDER")
        for ds in study:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", peer.port, ae_title="TRIAGE")
        assert assoc.is_established
        assert [int(assoc.send_c_store(ds).Status) for ds in study[:3]] == [0] * 3
        assoc.abort()
        wait(lambda: uid in worklist(out), 60, "the triage of the part received")
        assert _spooled(out, uid) == sorted(ds.SOPInstanceUID for ds in study[:3])
        for ds in study[:3]:  # whole: every pixel as sent
            kept = pydicom.dcmread(out / "spool" / uid / f"{ds.SOPInstanceUID}.dcm")
            assert np.array_equal(kept.pixel_array, ds.pixel_array)
        assert not list((out / "spool" / ".incoming").iterdir())
        first = worklist(out)[uid]["processed_at"]
        assert send(peer.port, study[3:]) == [0] * (len(study) - 3)
        wait(lambda: worklist(out)[uid]["processed_at"] != first, 60, "the second triage")
        assert len(worklist(out)) == 1
    assert not peer.errors


def test_pacs_down_while_the_listener_reports(make_orthanc, studies, tiny_model, pacs_router,
                                              tmp_path, caplog):
    """The PACS is down when an SR is due: the listener keeps serving, the study stays
    unreported, and the SR is stored once the PACS is back."""
    from triage.pacs.report import create_sink

    orthanc = make_orthanc()
    orthanc.stop()
    uid, study = next(iter(studies.items()))
    out = tmp_path / "out"
    with _InProcess(out, tiny_model, pacs_router, sink=create_sink(orthanc.dicomweb)) as peer:
        assert send(peer.port, study) == [0] * len(study)
        wait(lambda: uid in worklist(out), 60, "the triage")
        time.sleep(1.0)
        assert peer.thread.is_alive() and echo(peer.port)
        assert not (out / "spool" / uid / ".reported").exists()
        orthanc.start()
        wait(lambda: len(orthanc.instances_of_modality("SR")) == 1, 60, "the SR, late")
        wait(lambda: (out / "spool" / uid / ".reported").exists(), 10, "the reported mark")
    assert not peer.errors
    # the listener sends again by itself: nothing for the user to rerun
    assert "sends it again in" in caplog.text and "rerun" not in caplog.text.lower()


def test_the_listener_serves_on_when_an_sr_cannot_be_built(orthanc, studies, tiny_model,
                                                           pacs_router, tmp_path, caplog,
                                                           monkeypatch):
    """A study with PatientSex U and a birth date 1901-02-03 (highdicom refuses both) gets
    its SR without them; a study whose SR highdicom refuses outright (injected: a
    ValueError from `build_sr`) is logged once, marked reported and never retried; the
    listener serves on and the next study's SR goes out."""
    import copy

    from triage.pacs import report
    from triage.pacs.report import create_sink

    (odd, odd_study), (bad, bad_study), (good, good_study) = list(studies.items())[:3]
    odd_study = [copy.deepcopy(ds) for ds in odd_study]
    for ds in odd_study:
        ds.PatientSex = "U"
        with config.disable_value_validation():  # not a DA: the point here
            ds.PatientBirthDate = "1901-02-03"
    real_build, built = report.build_sr, []

    def refuse_one(row, *args, **kwargs):
        built.append(row.study_uid)
        if row.study_uid == bad:
            raise ValueError("highdicom refused it")
        return real_build(row, *args, **kwargs)

    monkeypatch.setattr(report, "build_sr", refuse_one)
    out = tmp_path / "out"
    with _InProcess(out, tiny_model, pacs_router, sink=create_sink(orthanc.dicomweb)) as peer:
        for study in (odd_study, bad_study):
            assert send(peer.port, study) == [0] * len(study)
        wait(lambda: all((out / "spool" / u / ".reported").exists() for u in (odd, bad)),
             90, "both studies reported")
        assert send(peer.port, good_study) == [0] * len(good_study)
        wait(lambda: (out / "spool" / good / ".reported").exists(), 60, "the next SR")
        time.sleep(1.5)  # room for a retry of the SR that cannot be built
        assert peer.thread.is_alive() and echo(peer.port)
    assert not peer.errors
    assert built.count(bad) == 1
    srs = {ds.StudyInstanceUID: ds for ds in (pydicom.dcmread(io.BytesIO(b)) for b in
                                              orthanc.instances_of_modality("SR"))}
    assert sorted(srs) == sorted([odd, good])
    assert srs[odd].PatientSex == "" and srs[odd].PatientBirthDate == ""
    assert f"No SR for study {bad}: it could not be built (ValueError)." in caplog.text
    assert "1901-02-03" not in caplog.text


def _run(source: str, out: Path, tiny_model, rules: Path, *extra: str) -> int:
    return main(["run", source, "--model", str(tiny_model.bundle_dir), "--out", str(out),
                 "--rules", str(rules), "--device", "cpu", "--json", *extra])


def test_corrupt_instance_pulled_by_dicomweb(orthanc, pacs_export, tiny_model, rules_path,
                                             tmp_path, capsys):
    """One instance with truncated pixel data, pushed to Orthanc (STOW-like REST upload):
    its study gets a failed or review row naming its files inside the staging folder, not
    the output folder's path; the other studies are triaged as usual."""
    export = tmp_path / "export"
    shutil.copytree(pacs_export, export)
    uids = study_uids(export)
    bad = uids[0]
    files = [p for p in sorted(export.rglob("*")) if p.is_file() and _study_of(p) == bad]
    victim = files[len(files) // 2]  # a gap in the series: the loader names the folder
    ds = pydicom.dcmread(victim)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # bad pixel data
    ds.save_as(victim)
    assert orthanc.upload_export(export) >= len(uids)
    out = tmp_path / "out"
    assert _run(orthanc.dicomweb, out, tiny_model, rules_path) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {r["study_uid"]: r for r in _worklist_rows(out)}
    assert sorted(rows) == uids, summary
    assert rows[bad]["route"] in ("failed", "review"), rows[bad]
    assert all(rows[u]["route"] != "failed" for u in uids[1:])
    # Reasons name staged files relative to the staging folder, as a folder run does.
    text = rows[bad]["reasons"] + rows[bad]["warnings"]
    assert str(tmp_path) not in text and "staging" not in text, text


def _study_of(path: Path) -> str:
    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    except Exception:  # noqa: BLE001 - manifest, ground truth
        return ""


def _worklist_rows(out: Path) -> list[dict]:
    import csv

    rows = []
    for name in ("worklist.csv", "review_worklist.csv"):
        if (out / name).is_file():
            with open(out / name, encoding="utf-8", newline="") as fh:
                rows += list(csv.DictReader(fh))
    return rows


def test_pacs_down_while_srs_are_sent(orthanc, pacs_export, tiny_model, rules_path,
                                      tmp_path, capsys, monkeypatch):
    """The PACS dies after two SRs: exit 3; once it is back, the same command sends the
    rest, and the PACS holds one SR per study (the two already sent are not duplicated)."""
    from triage.pacs import report
    from triage.pacs.retry import Backoff

    orthanc.upload_export(pacs_export)
    uids = study_uids(pacs_export)
    monkeypatch.setattr(report, "Backoff", lambda: Backoff(attempts=2, first_wait=0.1))
    real_send = report.StowSink.send
    sent: list[str] = []

    def send_then_die(self, dataset):
        if len(sent) == 2:
            orthanc.stop()
        real_send(self, dataset)
        sent.append(dataset.StudyInstanceUID)

    monkeypatch.setattr(report.StowSink, "send", send_then_die)
    out = tmp_path / "out"
    assert _run(orthanc.dicomweb, out, tiny_model, rules_path,
                "--report-to", orthanc.dicomweb) == 3
    assert "rerun" in capsys.readouterr().err.lower()
    orthanc.start()
    assert len(_sr_uids(orthanc)) == 2
    monkeypatch.setattr(report.StowSink, "send", real_send)
    assert _run(orthanc.dicomweb, out, tiny_model, rules_path,
                "--report-to", orthanc.dicomweb) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reports"]["sent"] == len(uids)
    srs = _sr_uids(orthanc)
    assert len(srs) == len(set(srs)) == len(uids)


def _journaled(out: Path) -> dict:
    from triage.run.journal import read_journal

    return read_journal(out / "journal.jsonl")[1]


def test_a_download_cut_off_is_retried_and_then_stops_the_run(orthanc, pacs_export,
                                                              tiny_model, rules_path,
                                                              tmp_path, capsys, monkeypatch):
    """WADO-RS answers cut off mid-body (requests' ChunkedEncodingError) are retried with
    the backoff; cut every time, the run stops with exit 3 and journals nothing for the
    study; cut once, the retry fetches it and the rerun finishes with no failed row."""
    from triage.pacs import dicomweb
    from triage.pacs.retry import Backoff

    orthanc.upload_export(pacs_export)
    uids = study_uids(pacs_export)
    monkeypatch.setattr(dicomweb, "Backoff", lambda: Backoff(attempts=2, first_wait=0.1))
    out = tmp_path / "out"
    with BreakingProxy(orthanc.url) as proxy:
        proxy.cut = -1
        assert _run(proxy.dicomweb, out, tiny_model, rules_path) == 3
        err = capsys.readouterr().err
        assert "ChunkedEncodingError" in err and "rerun" in err, err
        assert proxy.seen[:2] == [uids[0]] * 2  # retried
        assert _journaled(out) == {}
        proxy.cut, proxy.seen = 1, []
        assert _run(proxy.dicomweb, out, tiny_model, rules_path) == 0
        assert proxy.seen.count(uids[0]) == 2
    rows = _journaled(out)
    assert sorted(rows) == uids
    assert all(r.route != "failed" for r in rows.values()), rows


def test_a_gateway_503_stops_the_run_and_a_404_fails_the_study(orthanc, pacs_export,
                                                               tiny_model, rules_path,
                                                               tmp_path, capsys,
                                                               monkeypatch):
    """A gateway answering HTTP 503 to the WADO-RS of a study after the retries stops the
    run (exit 3, nothing journaled for that study), as QIDO-RS does for the same status;
    once the server answers 404 (the study is gone), the study gets its failed row."""
    from triage.pacs import dicomweb
    from triage.pacs.retry import Backoff

    orthanc.upload_export(pacs_export)
    uids = study_uids(pacs_export)
    victim = uids[1]
    monkeypatch.setattr(dicomweb, "Backoff", lambda: Backoff(attempts=2, first_wait=0.1))
    out = tmp_path / "out"
    with BreakingProxy(orthanc.url) as proxy:
        proxy.status, proxy.only = 503, frozenset({victim})
        assert _run(proxy.dicomweb, out, tiny_model, rules_path) == 3
        err = capsys.readouterr().err
        assert "HTTP 503" in err and "rerun" in err, err
        assert proxy.seen.count(victim) == 2
        journaled = _journaled(out)
        assert victim not in journaled
        assert all(r.route != "failed" for r in journaled.values()), journaled
        proxy.status = 404
        assert _run(proxy.dicomweb, out, tiny_model, rules_path) == 0
        rows = _journaled(out)
        assert sorted(rows) == uids
        assert rows[victim].route == "failed"
        assert "answered HTTP 404" in rows[victim].reasons, rows[victim].reasons
        assert all(rows[u].route != "failed" for u in uids if u != victim)
        # what an older version journaled for a 503: the study is fetched again
        old = rows[uids[2]].to_dict() | {
            "route": "failed",
            "reasons": "retrieval failed: the DICOMweb server answered HTTP 503 after 5 tries"}
        with open(out / "journal.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(old) + "\n")
        proxy.status, proxy.seen = 0, []
        assert _run(proxy.dicomweb, out, tiny_model, rules_path) == 0
    assert proxy.seen == [uids[2]]
    assert _journaled(out)[uids[2]].route != "failed"
