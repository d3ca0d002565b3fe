"""Every `triage run` is an MLflow run with a report beside the worklists: counts, PHI scan
of the store and its artifacts, the report in a real browser, tracking failures, the
drift-alarm stop-rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.report.browser import render, tables
from triage.cli import main
from triage.registry.tracking import client_for, scan_files_for_identifiers
from triage.run.worklist import read_worklist


def _run(run_case, tiny_model, rules_path, out: Path, *extra: str) -> int:
    return main(["run", str(run_case.export_dir), "--model", str(tiny_model.bundle_dir),
                 "--out", str(out), "--rules", str(rules_path), "--workers", "1", "--json",
                 *extra])


@pytest.fixture(scope="module")
def tracked(run_case, tiny_model, rules_path, tmp_path_factory):
    """One run into a fresh store of its own (experiment ``phi-runs``)."""
    root = tmp_path_factory.mktemp("tracked")
    store = root / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        assert _run(run_case, tiny_model, rules_path, root / "out", "--experiment",
                    "phi-runs") == 0
    return root / "out", store, uri


def test_the_run_is_recorded_in_mlflow_with_the_worklist_counts(tracked):
    out, _, uri = tracked
    rows = read_worklist(out / "worklist.csv")
    record = json.loads((out / "run_record.json").read_text())
    client = client_for(uri)
    run = client.get_run(record["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "phi-runs"
    metrics, tags = run.data.metrics, run.data.tags
    for route, n in Counter(r.route for r in rows).items():
        assert metrics[f"route.{route}"] == n
    for (group, route), n in Counter((r.device_group, r.route) for r in rows).items():
        assert metrics[f"device.{group}.route.{route}"] == n
    assert metrics["studies"] == len(rows) and "stage_seconds.inference" in metrics
    assert tags["triage.rules_version"] == rows[0].rules_version
    assert tags["triage.model_name"] == "bundle" and tags["triage.alarms_active"] == "none"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"run_record.json", "report_summary.html"}
    scored = [r for r in rows if r.p_calibrated]
    assert sum(len(g["scores"]) for g in record["device_group"].values()) == len(scored)
    assert sum(sum(g["score_hist"]) for g in record["device_group"].values()) == len(scored)


def test_no_identifier_reaches_the_run_store_or_its_artifacts(tracked, run_case):
    """The PHI scan of docs/mlflow.md on a `triage run`: patient names, IDs, accession
    numbers, birth dates and study UIDs are in the export and the worklist, and nowhere in
    the store (database and artifacts)."""
    out, store, _ = tracked
    names = sorted(n for n in run_case.names if len(n) >= 4)
    uids = sorted(run_case.identifiers)
    assert len(names) >= 10 and uids
    assert (store / "mlflow.db").is_file() and (store / "mlartifacts").is_dir()
    assert scan_files_for_identifiers([store], names) == []
    assert scan_files_for_identifiers([store], uids) == []
    assert scan_files_for_identifiers([out / "run_record.json"], names + uids) == []
    # the scan finds them where they are: the worklist and the full report name studies
    assert scan_files_for_identifiers([out / "worklist.csv"], uids)
    assert scan_files_for_identifiers([out / "report.html"], uids)


def test_the_report_renders_in_a_browser_and_shows_the_worklist_counts(tracked, tmp_path):
    out, _, _ = tracked
    html = (out / "report.html").read_text()
    assert "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "") and "https://" not in html
    dom, console = render(out / "report.html", tmp_path)
    assert console == []
    rows = read_worklist(out / "worklist.csv")
    assert {"review", "failed"} <= {r.route for r in rows}  # both kinds of listed study
    shown = {}
    for attrs, cells in tables(dom)["route-counts"]:
        shown[attrs["data-device"]] = {c: int(v) for c, v in cells if c}
    expected = Counter((r.device_group, r.route) for r in rows)
    for group in {r.device_group for r in rows}:
        assert shown[group]["studies"] == sum(n for (g, _), n in expected.items() if g == group)
        for route in ("urgent", "routine", "review", "failed"):
            assert shown[group][route] == expected.get((group, route), 0)
    assert shown["__total__"]["studies"] == len(rows)
    listed = [dict(cells)["study_uid"] for _, cells in tables(dom)["review-studies"]]
    assert sorted(listed) == sorted(r.study_uid for r in rows if r.route in ("review",
                                                                             "failed"))
    assert "data:image/png;base64," in dom  # a thumbnail of a reviewed study's volume


@pytest.mark.parametrize("modality", ["SC", "OT", "sc"])
def test_no_thumbnail_of_a_secondary_capture_or_other(tracked, tmp_path, modality):
    """The same run's report without thumbnails once its reviewed series are SC or OT
    (they can carry burned-in text); the counts stay the worklist's."""
    import dataclasses
    import shutil

    from triage.monitor.record import read_record
    from triage.monitor.run_report import thumbnails, write_run_report

    out, _, _ = tracked
    rows = read_worklist(out / "worklist.csv")
    thumbs = thumbnails(out, rows)
    assert thumbs  # the CT series of reviewed studies have them
    relabelled = [dataclasses.replace(r, modality=modality) if r.study_uid in thumbs else r
                  for r in rows]
    assert thumbnails(out, relabelled) == {}
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    html = write_run_report(copy, read_record(out), relabelled).read_text()
    assert "data:image/png" not in html
    listed = [dict(cells)["study_uid"] for _, cells in tables(html)["review-studies"]]
    assert sorted(listed) == sorted(r.study_uid for r in rows
                                    if r.route in ("review", "failed"))


def test_an_unreachable_tracking_server_keeps_the_worklist(run_case, tiny_model, rules_path,
                                                           tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    out = tmp_path / "out"
    assert _run(run_case, tiny_model, rules_path, out) == 3
    err = capsys.readouterr().err
    assert "worklists and report.html are written" in err and "rerun" in err
    assert len(read_worklist(out / "worklist.csv")) == 7
    assert (out / "report.html").is_file() and (out / "run_record.json").is_file()


def test_an_active_alarm_sends_its_device_group_to_review(run_case, tiny_model, rules_path,
                                                          tmp_path):
    from triage.monitor.alarms import Alarm, AlarmState

    group = "acme-tomography-voxa-64"
    state = AlarmState.load(tmp_path / "alarms.json")
    state.raise_alarms([Alarm(id=f"score-cusum:{group}", device_group=group,
                              statistic="score", rule="cusum", detail="CUSUM 9.1 > 8",
                              raised_utc="2025-01-01T00:00:00+00:00")])
    state.save()
    out = tmp_path / "out"
    assert _run(run_case, tiny_model, rules_path, out, "--alarms",
                str(tmp_path / "alarms.json")) == 0
    rows = read_worklist(out / "worklist.csv")
    alarmed = [r for r in rows if r.device_group == group and r.route != "failed"]
    assert alarmed and all(r.route == "review" and r.rule_ids.startswith("drift-alarm")
                           and f"score-cusum:{group}" in r.reasons for r in alarmed)
    others = [r for r in rows if r.device_group != group]
    assert all("drift-alarm" not in r.rule_ids for r in others)
    record = json.loads((out / "run_record.json").read_text())
    assert record["alarms"] and group in record["alarms"][0]
