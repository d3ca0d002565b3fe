"""The two measurements: `triage listen` fed by C-STORE, and `triage run` from DICOMweb
against the same studies in a folder.

Listen: studies are sent one association each, back to back, by pynetdicom (storescu from
Python); a thread follows Orthanc's change feed (``/changes``, every 50 ms) and notes when
each study's SR is stored. Latency is that moment less the acknowledgement of the study's
last instance, less ``--stable-seconds`` (the wait the listener is told to make). The
listener's process tree is sampled for its peak resident memory.

Run: the studies are uploaded into a fresh Orthanc; `triage run` triages them from its
DICOMweb URL and from the export folder, each in a fresh process with a fresh ``--out``;
throughput is the ``studies_per_minute`` each run's summary records (model loading and
start-up excluded), wall time is reported too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import TreeSampler
from benchmarks.pacs.orthanc import Orthanc, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ListenResult:
    """What the listen measurement saw.

    Attributes:
        studies: studies sent; reported: studies whose SR reached Orthanc.
        instances: instances sent.
        stable_seconds: the listener's ``--stable-seconds``.
        send_s: from the first association to the last acknowledgement.
        span_s: from the first association to the last SR stored.
        latencies_s: per study, SR stored less last instance acknowledged less
            `stable_seconds`.
        peak_rss_mib: peak resident memory of the listener's process tree.
    """

    studies: int
    reported: int
    instances: int
    stable_seconds: float
    send_s: float
    span_s: float
    latencies_s: tuple[float, ...]
    peak_rss_mib: float


@dataclass(frozen=True)
class RunResult:
    """One `triage run`: its source kind, wall time, and its summary's figures."""

    source: str
    studies: int
    wall_s: float
    seconds: float
    studies_per_minute: float
    exit_code: int


def _env(tracking: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI":
                         f"sqlite:///{tracking}"}


def _by_study(export: Path) -> dict[str, list[Path]]:
    import pydicom

    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in export.rglob("*") if p.is_file()):
        try:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        except (pydicom.errors.InvalidDicomError, AttributeError):
            continue  # the manifest, the ground truth
        found[uid].append(path)
    return dict(sorted(found.items()))


def _echo(port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


def _send_study(port: int, paths: list[Path]) -> None:
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title="BENCH")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    if not assoc.is_established:
        raise SystemExit(f"the listener refused an association on port {port}")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if int(getattr(status, "Status", -1)) != 0:
                raise SystemExit(f"the listener answered C-STORE status {status}")
    finally:
        assoc.release()


class _SrWatch(threading.Thread):
    """Follows Orthanc's change feed; notes when the first SR of each study is stored."""

    def __init__(self, orthanc: Orthanc) -> None:
        super().__init__(daemon=True)
        self.orthanc, self.seen, self.done = orthanc, {}, threading.Event()
        self.since = orthanc.get("/changes?last")["Last"]

    def run(self) -> None:
        while not self.done.is_set():
            changes = self.orthanc.get(f"/changes?since={self.since}&limit=1000")
            now = time.monotonic()
            for change in changes["Changes"]:
                if change["ChangeType"] == "NewInstance":
                    tags = self.orthanc.get(f"/instances/{change['ID']}/simplified-tags")
                    if tags.get("Modality") == "SR":
                        self.seen.setdefault(tags["StudyInstanceUID"], now)
            self.since = changes["Last"]
            if not changes["Done"]:
                continue
            self.done.wait(0.05)


def measure_listen(bundle: Path, export: Path, work: Path, *, stable_seconds: float,
                   timeout_s: float) -> ListenResult:
    """Send every study of `export` to a fresh `triage listen` reporting to a fresh Orthanc."""
    studies = _by_study(export)
    orthanc = Orthanc(work / "orthanc-listen")
    port, out = free_port(), work / "listen"
    log = open(work / "listen.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "triage", "listen", "--model", str(bundle), "--out", str(out),
         "--port", str(port), "--stable-seconds", str(stable_seconds), "--device", "cpu",
         "--report-to", orthanc.dicomweb], env=_env(work / "mlflow.db"), stdout=log,
        stderr=subprocess.STDOUT, cwd=work)
    peak = TreeSampler(proc.pid)
    peak.start()
    watch = _SrWatch(orthanc)
    try:
        deadline = time.monotonic() + 120
        while not _echo(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"triage listen did not start; see {work / 'listen.log'}")
            time.sleep(0.5)
        watch.start()
        acked: dict[str, float] = {}
        first = time.monotonic()
        for uid, paths in studies.items():
            _send_study(port, paths)
            acked[uid] = time.monotonic()
        sent = time.monotonic()
        deadline = sent + timeout_s
        while len(watch.seen) < len(studies) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"triage listen exited; see {work / 'listen.log'}")
            time.sleep(0.2)
    finally:
        watch.done.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        peak.stop()
        log.close()
        orthanc.stop()
    seen = dict(watch.seen)
    latencies = tuple(sorted(seen[u] - acked[u] - stable_seconds for u in seen if u in acked))
    return ListenResult(len(studies), len(seen), sum(len(p) for p in studies.values()),
                        stable_seconds, sent - first,
                        (max(seen.values()) - first) if seen else float("nan"), latencies,
                        peak.peak / 2**20)


def _triage_run(source: str, bundle: Path, out: Path, work: Path, workers: int,
                kind: str) -> RunResult:
    started = time.perf_counter()
    with open(work / f"run-{kind}.log", "w") as log:
        code = subprocess.run(
            [sys.executable, "-m", "triage", "run", source, "--model", str(bundle), "--out",
             str(out), "--device", "cpu", "--workers", str(workers), "--json"],
            env=_env(work / "mlflow.db"), stdout=log, stderr=subprocess.STDOUT,
            cwd=work).returncode
    wall = time.perf_counter() - started
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8")) \
        if (out / "run_summary.json").is_file() else {}
    return RunResult(kind, int(summary.get("processed", 0)), wall,
                     float(summary.get("seconds", float("nan"))),
                     float(summary.get("studies_per_minute") or float("nan")), code)


def measure_run(bundle: Path, export: Path, work: Path, *,
                workers: int) -> tuple[RunResult, RunResult]:
    """`triage run` from a folder, then from DICOMweb (same studies, fresh outputs)."""
    orthanc = Orthanc(work / "orthanc-run")
    try:
        orthanc.upload(export)
        folder = _triage_run(str(export), bundle, work / "run-folder", work, workers,
                             "folder")
        web = _triage_run(orthanc.dicomweb, bundle, work / "run-dicomweb", work, workers,
                          "dicomweb")
    finally:
        orthanc.stop()
    return folder, web
