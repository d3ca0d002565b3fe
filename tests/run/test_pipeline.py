"""`run_export` end to end on a small export: one row per study, reasons for broken ones,
identifiers in the worklist only, one bad study never stops the batch, kill and resume."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dicom.factories import (
    ACME,
    second_at_first_position,
    short_pixel_data,
    study_header,
    write_ct_series,
)
from tests.run.conftest import routing_for
from triage.run.journal import JOURNAL_NAME
from triage.run.pipeline import RunResult, run_export
from triage.run.worklist import (
    REVIEW_NAME,
    WORKLIST_COLUMNS,
    WORKLIST_NAME,
    WorklistRow,
    read_worklist,
    review_order,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Baseline:
    result: RunResult
    log: str


@pytest.fixture(scope="module")
def bundle(tiny_model):
    from triage.registry.bundle import load_bundle

    return load_bundle(tiny_model.bundle_dir)


@pytest.fixture(scope="module")
def baseline(run_case, bundle, router, tmp_path_factory) -> Baseline:
    """One uninterrupted run with every log record captured (DEBUG and up)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        result = run_export(run_case.export_dir, tmp_path_factory.mktemp("baseline"),
                            bundle=bundle, router=router, workers=2, batch_size=2,
                            model_name="tiny", model_version="7", device="cpu")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return Baseline(result, stream.getvalue())


def _by_uid(rows: list[WorklistRow]) -> dict[str, WorklistRow]:
    return {r.study_uid: r for r in rows}


def test_every_study_found_gets_exactly_one_row(baseline, run_case):
    result = baseline.result
    rows = read_worklist(result.worklist_path)
    assert rows == result.rows
    uids = [r.study_uid for r in rows]
    assert uids == sorted(set(run_case.identifiers) | {"unreadable:corrupt.dcm"})
    assert result.summary["studies"] == 7 and result.summary["non_dicom_ignored"] >= 1
    assert sum(result.summary["route"].values()) == 7
    for row in rows:
        assert row.route in {"urgent", "routine", "review", "failed"}
        assert row.reasons and row.rule_ids, row.study_uid
        assert (row.model_name, row.model_version) == ("tiny", "7")
        assert row.rules_version.startswith("test-run@2+")
        assert row.temperature and row.processed_at.endswith("+00:00")


def test_broken_studies_are_failed_with_their_reason(baseline, run_case):
    rows = _by_uid(baseline.result.rows)
    corrupt = rows["unreadable:corrupt.dcm"]
    assert (corrupt.route, corrupt.ingest_status, corrupt.rule_ids) == (
        "failed", "failed", "ingest-failed")
    assert "corrupt" in corrupt.reasons and corrupt.p_calibrated == ""
    rejected = rows[run_case.rejected_uid]
    assert rejected.route == "failed" and "3 slices < min 4" in rejected.reasons
    assert rejected.p_calibrated == "" and rejected.series_uid == ""


def test_reasons_name_files_inside_the_export_as_ingest_does(bundle, router, tmp_path):
    """The export folder's own path (often the patient's name) is in no output of a run."""
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig

    export = tmp_path / "DOE^JANE_4711" / "flat"
    write_ct_series(export, study_header("flat"), ACME, "flat", slices=6,
                    edit=second_at_first_position)
    write_ct_series(export / "SE1", study_header("cut"), ACME, "cut", slices=6,
                    edit=short_pixel_data)
    out = tmp_path / "out"
    result = run_export(export, out, bundle=bundle, router=router, workers=1,
                        device="cpu")
    reasons = {r.study_uid: r.reasons for r in result.rows}
    flat, cut = study_header("flat").study_uid, study_header("cut").study_uid
    assert reasons[flat].startswith("ingest failed: (export root): 1 slice position(s) hold")
    assert "), first SE1/IM0000.dcm: corrupt: pixel data has 1948 bytes" in reasons[cut]
    for name in (WORKLIST_NAME, REVIEW_NAME, JOURNAL_NAME):
        assert "DOE^JANE" not in (out / name).read_text(encoding="utf-8"), name
    ingested = ingest_export(export, tmp_path / "ingest",
                             IngestConfig.from_dict(bundle.ingest_config), workers=1)
    assert {r.study_uid: f"ingest failed: {r.reasons}" for r in ingested.reports} == reasons


def test_scored_studies_carry_probability_distance_and_rules(baseline, run_case):
    rows = [r for r in baseline.result.rows if r.ingest_status == "ok"]
    assert len(rows) == 5
    for row in rows:
        assert 0.0 <= float(row.p_calibrated) <= 1.0
        assert float(row.input_distance) >= 0.0
        assert row.modality == "CT" and row.series_uid and row.verdict
    unseen = [r for r in rows if r.device_group.startswith("cygnus")]
    assert unseen and all(r.route == "review" and "unseen-device" in r.rule_ids
                          for r in unseen)


def test_review_worklist_holds_review_and_failed_in_reading_order(baseline):
    result = baseline.result
    review = read_worklist(result.out_dir / REVIEW_NAME)
    assert review == review_order(result.rows, {r.study_uid: i for i, r in enumerate(review)})
    assert {r.study_uid for r in review} == {
        r.study_uid for r in result.rows if r.route in ("review", "failed")}
    assert [r.priority for r in review] == sorted(r.priority for r in review)


def test_identifiers_are_in_the_worklist_but_not_in_the_logs(baseline, run_case):
    rows = _by_uid(baseline.result.rows)
    for uid, (patient_id, accession, date) in run_case.identifiers.items():
        assert (rows[uid].patient_id, rows[uid].accession_number, rows[uid].study_date) == (
            patient_id, accession, date)
    assert "Found 7 studies" in baseline.log
    leaked = [name for name in run_case.names if name in baseline.log]
    assert leaked == []
    summary = (baseline.result.out_dir / "run_summary.json").read_text(encoding="utf-8")
    assert [name for name in run_case.names if name in summary] == []


def test_the_summary_says_where_the_time_went(baseline):
    summary = baseline.result.summary
    stages = summary["stage_seconds"]
    assert {"scan", "ingest_wait", "inference", "route_and_journal", "worklists"} <= set(stages)
    # A fresh run scores the volumes its workers send back: nothing is read from the cache.
    assert "read_cache" not in stages
    assert all(seconds >= 0 for seconds in stages.values())
    # Every figure is rounded to the millisecond: the sum may exceed the total by the
    # rounding of each term.
    assert sum(stages.values()) <= summary["seconds"] + 0.0005 * (len(stages) + 1)
    assert summary["workers"] == 2 and summary["inference_threads"] >= 1


def test_inference_keeps_all_its_threads_beside_the_ingest_workers(run_case, bundle, router,
                                                                   tmp_path):
    # The workers yield the CPU (lowest priority); the model is not squeezed onto the cores
    # they leave free.
    import torch

    seen = []

    def predict_proba(arrays, **kw):
        seen.append(torch.get_num_threads())
        return bundle.predict_proba(arrays, **kw)

    before = torch.get_num_threads()
    result = run_export(run_case.export_dir, tmp_path / "out", router=router, workers=2,
                        bundle=_Flaky(bundle, predict_proba=predict_proba), device="cpu")
    assert seen and set(seen) == {before}
    assert result.summary["inference_threads"] == before


class _Flaky:
    """Delegates to a real object but breaks one method (inference or routing)."""

    def __init__(self, target, **broken) -> None:
        self._target, self._broken = target, broken

    def __getattr__(self, name):
        return self._broken.get(name) or getattr(self._target, name)


def test_a_study_that_breaks_inference_or_routing_fails_alone(run_case, bundle, router,
                                                              tmp_path):
    victim = sorted(run_case.identifiers)[0]

    def route(evidence):
        if evidence.study_uid == victim:
            raise RuntimeError("rule exploded")
        return router.route(evidence)

    def predict_proba(arrays, **kw):
        raise ValueError("the network rejected the input")

    result = run_export(run_case.export_dir, tmp_path / "a", bundle=bundle,
                        router=_Flaky(router, route=route), workers=1, device="cpu")
    rows = _by_uid(result.rows)
    assert rows[victim].route == "failed" and rows[victim].rule_ids == "run.internal"
    assert "routing error (RuntimeError): rule exploded" in rows[victim].reasons
    assert sum(r.route == "failed" for r in result.rows) == 3  # + corrupt, rejected

    result = run_export(run_case.export_dir, tmp_path / "b", bundle=_Flaky(
        bundle, predict_proba=predict_proba), router=router, workers=1, device="cpu")
    failed = [r for r in result.rows if r.ingest_status == "ok"]
    assert len(failed) == 5 and all(r.route == "failed" for r in failed)
    assert all("the network rejected the input" in r.reasons
               and r.rule_ids == "inference-failed"
               for r in failed)


def test_a_rerun_reuses_the_journal_and_refuses_other_rules(baseline, run_case, bundle,
                                                           router, rules_path, tmp_path):
    from triage.route import Router
    from triage.run.journal import JournalError

    out = baseline.result.out_dir
    again = run_export(run_case.export_dir, out, bundle=bundle, router=router, workers=1,
                       model_name="tiny", model_version="7", device="cpu")
    assert (again.resumed, again.processed) == (7, 0)
    assert again.rows == baseline.result.rows
    other = tmp_path / "other.yaml"
    other.write_text(rules_path.read_text(encoding="utf-8").replace("version: '2'",
                                                                    "version: '3'"))
    changed = Router.from_yaml(other, routing_for(other), bundle.train_devices)
    with pytest.raises(JournalError, match="rules_version"):
        run_export(run_case.export_dir, out, bundle=bundle, router=changed, workers=1)


SCRIPT = """
import json, logging, os, sys, time
from pathlib import Path
from triage.registry.bundle import load_bundle
from triage.route import Router
from triage.run.pipeline import run_export

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
args = json.loads(sys.argv[1])
bundle = load_bundle(args["bundle"])
router = Router.from_yaml(args["rules"], args["routing"], bundle.train_devices)
pause = float(os.environ.get("PAUSE", "0"))
run_export(args["export"], args["out"], bundle=bundle, router=router, workers=2,
           batch_size=2, model_name="tiny", model_version="7", device="cpu",
           progress=lambda *a: time.sleep(pause if a[2] is not None else 0))
"""


def _strip(path: Path) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k != "processed_at"}
            for r in read_worklist(path)]


# Killed after the 2nd journaled study by default; `make test-all` kills at every other point.
KILL_POINTS = [2, *(pytest.param(k, marks=pytest.mark.slow) for k in (1, 3, 4, 5, 6))]


@pytest.mark.parametrize("kill_after", KILL_POINTS)
def test_a_run_killed_midway_resumes_to_the_same_worklist(baseline, run_case, tiny_model,
                                                         rules_path, tmp_path, kill_after):
    out = tmp_path / "out"
    args = json.dumps({"bundle": str(tiny_model.bundle_dir), "rules": str(rules_path),
                       "routing": routing_for(rules_path), "export": str(run_case.export_dir),
                       "out": str(out)})
    env = os.environ | {"PAUSE": "0.5", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and journal.read_bytes().count(b"\n") >= 1 + kill_after:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its ingest workers
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / WORKLIST_NAME).exists()
    log = stderr.decode("utf-8", "replace")
    assert "Found 7 studies" in log
    assert [name for name in run_case.names if name in log] == []

    done_before = journal.read_bytes().count(b"\n") - 1
    assert kill_after <= done_before < 7
    env["PAUSE"] = "0"
    subprocess.run([sys.executable, "-c", SCRIPT, args], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["resumed"] >= kill_after and summary["resumed"] + summary["processed"] == 7
    assert _strip(out / WORKLIST_NAME) == _strip(baseline.result.worklist_path)
    header = (out / WORKLIST_NAME).read_bytes().split(b"\r\n")[0].decode()
    assert header == ",".join(WORKLIST_COLUMNS)


@pytest.mark.parametrize("damage", ["cut short", "altered"])
def test_volumes_cached_by_an_earlier_run_are_read_back_and_a_damaged_one_remade(
        baseline, run_case, bundle, router, tmp_path, caplog, damage):
    # The journal is lost but the cache stays (a run killed after ingest, before scoring):
    # the workers find the volumes cached and the main process reads them back. An entry
    # damaged in the meantime is made again: by its worker when its file is cut short (a
    # stat shows it), by the main process when a byte changed (its read fails).
    import shutil

    out = tmp_path / "out"
    shutil.copytree(baseline.result.out_dir / "cache", out / "cache")
    volumes = sorted((out / "cache").rglob("*.nii.gz"))
    assert volumes
    damaged = volumes[0]
    data = bytearray(damaged.read_bytes())
    if damage == "cut short":
        del data[-64:]
    else:
        data[len(data) // 2] ^= 0xFF  # same size: only reading the array can tell
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        result = run_export(run_case.export_dir, out, bundle=bundle, router=router,
                            workers=2, batch_size=2, model_name="tiny", model_version="7",
                            device="cpu")
    stages = result.summary["stage_seconds"]
    assert stages["read_cache"] > 0
    again_here = sum("ingesting the study again" in m for m in caplog.messages)
    assert again_here == (damage == "altered")
    assert ("ingest_again" in stages) == (damage == "altered")
    assert _strip(result.worklist_path) == _strip(baseline.result.worklist_path)
    assert damaged.read_bytes() != bytes(data)  # written whole again
