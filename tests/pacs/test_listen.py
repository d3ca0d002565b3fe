"""`triage listen`: C-STORE in, a worklist row (and an SR to Orthanc) per stable study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pydicom

from tests.pacs.orthanc import free_port
from tests.pacs.scu import echo as _echo
from tests.pacs.scu import send as _send
from tests.pacs.scu import wait as _wait
from tests.pacs.scu import worklist as _worklist
from triage.pacs.sr import read_sr


def test_listen_receives_triages_updates_and_reports(orthanc, pacs_export, tiny_model,
                                                     rules_path, tmp_path):
    files: dict[str, list] = {}
    for path in sorted(pacs_export.rglob("*")):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # noqa: BLE001, S112 - manifest, ground truth
            continue
        files.setdefault(ds.StudyInstanceUID, []).append(ds)
    uid = sorted(files)[0]
    study = files[uid]
    port, out = free_port(), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "triage", "listen", "--model", str(tiny_model.bundle_dir),
         "--out", str(out), "--rules", str(rules_path), "--device", "cpu", "--port",
         str(port), "--stable-seconds", "1", "--allow-ae", "SENDER,ORTHANC",
         "--report-to", orthanc.dicomweb], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: _echo(port), what="C-ECHO")
        assert _send(port, study[:1], calling="INTRUDER") is None  # not allowed
        broken = pydicom.Dataset()
        broken.file_meta = study[0].file_meta
        broken.SOPClassUID, broken.SOPInstanceUID = study[0].SOPClassUID, "1.2.3.4"
        # the first part of the study, and an instance without a study: refused alone
        assert _send(port, study[:5] + [broken]) == [0] * 5 + [0xC210]
        _wait(lambda: uid in _worklist(out), what="the first triage")
        first = _worklist(out)[uid]
        _wait(lambda: len(orthanc.instances_of_modality("SR")) == 1, what="the first SR")
        (first_sr,) = [read_sr(b) for b in orthanc.instances_of_modality("SR")]
        assert first_sr["predecessors"] == []
        assert _send(port, study[5:]) == [0] * (len(study) - 5)  # the rest arrives late
        _wait(lambda: _worklist(out)[uid]["processed_at"] != first["processed_at"]
              or len(orthanc.instances_of_modality("SR")) == 2, what="the second triage")
        _wait(lambda: len(orthanc.instances_of_modality("SR")) == 2, what="the second SR")
        (second_sr,) = [sr for sr in map(read_sr, orthanc.instances_of_modality("SR"))
                        if sr["sop_uid"] != first_sr["sop_uid"]]
        assert second_sr["predecessors"] == [first_sr["sop_uid"]]  # it supersedes the first
        assert len(_worklist(out)) == 1
        assert len(list((out / "spool" / uid).glob("*.dcm"))) == len(study)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log = proc.stdout.read() if proc.stdout else ""
    for ds in study[:1]:  # logs name studies by UID, never the patient
        assert str(ds.PatientID) not in log and str(ds.PatientName) not in log
