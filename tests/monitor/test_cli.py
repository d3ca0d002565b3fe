"""`triage monitor` over run folders and over an MLflow experiment; `triage monitor clear`;
the window report in a real browser."""

from __future__ import annotations

import json

from tests.report.browser import render, tables
from triage.cli import main
from triage.monitor.alarms import AlarmState
from triage.monitor.scenarios import Scenario, stream


def _folders(tmp_path, scenario):
    records, _ = stream(scenario)
    folders = []
    for i, record in enumerate(records):
        folder = tmp_path / f"run{i:02d}"
        folder.mkdir()
        record.write(folder)
        folders.append(str(folder))
    return folders


def test_monitor_raises_prints_and_clears_alarms(tmp_path, capsys):
    folders = _folders(tmp_path, Scenario(shift="new-device", shift_at=12, seed=2))
    alarms, report = tmp_path / "alarms.json", tmp_path / "window.html"
    args = ["monitor", *folders, "--alarms", str(alarms), "--report", str(report), "--no-log"]
    assert main([*args, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert "input-cusum:acme" in [a["id"] for a in payload["alarms_raised"]]
    assert payload["device_groups"]["acme"]["input"]["alarm_at"]["run"] == 12
    assert AlarmState.load(alarms).active_by_group()["acme"]
    assert main(args) == 1  # still active, not raised twice
    out = capsys.readouterr().out
    assert "active input-cusum:acme" in out and "ALARM" not in out
    assert main(["monitor", "clear", "--alarms", str(alarms), "--device-group", "acme",
                 "--by", "physicist"]) == 0
    assert "cleared" in capsys.readouterr().out
    assert AlarmState.load(alarms).active() == []
    # the stable stream of another folder set raises nothing
    stable = _folders(tmp_path / "stable" if (tmp_path / "stable").mkdir() is None else None,
                      Scenario(seed=4))
    assert main(["monitor", *stable, "--report", str(tmp_path / "s.html"), "--no-log"]) == 0


def test_the_window_report_renders_in_a_browser(tmp_path, capsys):
    folders = _folders(tmp_path, Scenario(shift="noise", shift_at=10, seed=1))
    report = tmp_path / "window.html"
    assert main(["monitor", *folders, "--report", str(report), "--no-log"]) == 1
    dom, console = render(report, tmp_path)
    assert console == [] and "<script" not in report.read_text()
    found = tables(dom)
    assert found["alarms-raised"] and len(found["volume-acme"]) == 20
    assert [int(cells[1][1]) for _, cells in found["volume-acme"]] == [25] * 20


def test_monitor_reads_an_mlflow_experiment_and_logs_its_alarms(tmp_path, monkeypatch,
                                                                 capsys):
    from triage.monitor.runlog import log_run
    from triage.registry.tracking import client_for

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    records, _ = stream(Scenario(shift="hu-offset", shift_at=6, runs=10, seed=2))
    for record in records:
        log_run(record, "<html></html>", experiment="runs-x")
    assert main(["monitor", "--experiment", "runs-x", "--since", records[2].finished_utc,
                 "--report", str(tmp_path / "w.html"), "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["runs"]) == 8
    assert "input-cusum:acme" in [a["id"] for a in payload["alarms_raised"]]
    run = client_for().get_run(payload["mlflow_run_id"])
    assert "input-cusum:acme" in run.data.tags["triage.alarms_raised"]
    assert run.data.metrics["alarms_raised"] >= 1
