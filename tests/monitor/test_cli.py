"""`triage monitor` over run folders and over an MLflow experiment; `triage monitor clear`;
the window report in a real browser."""

from __future__ import annotations

import json

import pytest

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


def test_runs_killed_while_recorded_are_left_out_not_fatal(tmp_path, monkeypatch, capsys):
    """A `triage run` killed while logging leaves a RUNNING run without its record: every
    later `triage monitor` of the experiment failed on it."""
    from triage.monitor.runlog import RUN_KIND_TAG, log_run
    from triage.registry.tracking import client_for

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    records, _ = stream(Scenario(runs=3, seed=4))
    for record in records:
        log_run(record, "<html></html>", experiment="runs-k")
    client = client_for()
    experiment = client.get_experiment_by_name("runs-k").experiment_id
    tags = {RUN_KIND_TAG: "run", "triage.finished_utc": records[-1].finished_utc}
    client.log_metric(client.create_run(experiment, tags=tags).info.run_id, "studies", 40)
    finished = client.create_run(experiment, tags=tags).info.run_id  # no record either
    client.set_terminated(finished)
    assert main(["monitor", "--experiment", "runs-k", "--report", str(tmp_path / "w.html"),
                 "--no-log", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 3


def test_since_is_compared_as_a_time_not_as_text(tmp_path, capsys):
    # run i finished at 2025-01-01T<i>:00:00 (UTC): 06:00+01:00 is 05:00 UTC, so runs 5-19
    folders = _folders(tmp_path, Scenario(seed=4))
    base = ["monitor", *folders, "--report", str(tmp_path / "w.html"), "--no-log", "--json"]
    assert main([*base, "--since", "2025-01-01T06:00+01:00"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 15
    assert main([*base, "--since", "2025-01-01"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 20


@pytest.mark.parametrize("value", ["yesterday", "2025-3-1", "01/03/2025"])
def test_a_since_that_is_not_an_iso_date_is_refused_up_front(tmp_path, capsys, value):
    folders = _folders(tmp_path, Scenario(runs=2, seed=4))
    code = main(["monitor", *folders, "--since", value, "--report", str(tmp_path / "w.html"),
                 "--no-log"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: --since {value!r} is not an ISO 8601 date or date-time; "
                          f"give YYYY-MM-DD"), err
    assert not (tmp_path / "w.html").exists()


def _active(path):
    from triage.monitor.alarms import Alarm

    state = AlarmState(path, [Alarm("input-cusum:acme", "acme", "input", "cusum", "rose",
                                    "2025-01-02T00:00:00+00:00"),
                              Alarm("score-cusum:borealis", "borealis", "score", "cusum",
                                    "moved", "2025-01-02T00:00:00+00:00")])
    state.save()
    return path.read_bytes()


@pytest.mark.parametrize("by", [[], ["--by", ""], ["--by", "  "]], ids=["none", "empty",
                                                                           "blank"])
def test_clear_needs_who_clears(tmp_path, capsys, by):
    alarms = tmp_path / "alarms.json"
    before = _active(alarms)
    assert main(["monitor", "clear", "--alarms", str(alarms), *by]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: `triage monitor clear` needs --by NAME: who clears the alarms "
                   "(recorded with each one).")
    assert alarms.read_bytes() == before


@pytest.mark.parametrize("choice", [["--device-group", "acm"], ["--alarm", "input-cusum:acm"]])
def test_clearing_an_alarm_that_is_not_active_names_the_active_ones(tmp_path, capsys,
                                                                    choice):
    alarms = tmp_path / "alarms.json"
    before = _active(alarms)
    assert main(["monitor", "clear", "--alarms", str(alarms), *choice, "--by", "phys"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: No active alarm in {alarms} matches {choice[0]} {choice[1]!r}; "
                   f"nothing was cleared. Active alarms: input-cusum:acme (device group "
                   f"acme), score-cusum:borealis (device group borealis).")
    assert alarms.read_bytes() == before
    assert main(["monitor", "clear", "--alarms", str(alarms), "--device-group", "acme",
                 "--by", "phys", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cleared": ["input-cusum:acme"]}
    [cleared] = [a for a in AlarmState.load(alarms).alarms if not a.active]
    assert cleared.cleared_by == "phys"
    # nothing active is not a mistake
    assert main(["monitor", "clear", "--alarms", str(tmp_path / "none.json"), "--by",
                 "phys"]) == 0
    assert "none was active" in capsys.readouterr().out


def test_clear_options_are_refused_outside_clear(tmp_path, capsys):
    folders = _folders(tmp_path, Scenario(runs=2, seed=4))
    assert main(["monitor", *folders, "--device-group", "acme", "--no-log"]) == 2
    assert capsys.readouterr().err.startswith("error: --device-group and --alarm choose")
