"""`triage monitor`: drift alarms over a window of runs; `triage monitor clear`."""

from __future__ import annotations

from pathlib import Path

import typer

from triage.cli.options import JSON, echo_json

MONITOR_EXPERIMENT = "triage-monitor"


def monitor(
    runs: list[str] = typer.Argument(None, help="Run folders (`triage run --out`); or "
                                                "'clear' to clear alarms. None: read the "
                                                "runs of --experiment from MLflow."),
    experiment: str = typer.Option("triage-runs", "--experiment",
                                   help="MLflow experiment of the runs (when no folder is "
                                        "given)."),
    since: str = typer.Option("", "--since",
                              help="Only runs finished on or after this ISO 8601 date or "
                                   "date-time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM] "
                                   "(UTC without an offset)."),
    labels: Path = typer.Option(None, "--labels", exists=True, dir_okay=False,
                                help="Labels CSV (study_uid,label) for miss rate and PPV; "
                                     "needs run folders."),
    label_store: Path = typer.Option(None, "--label-store", exists=True, dir_okay=False,
                                     help="The feedback label store (docs/feedback.md)."),
    alarms: Path = typer.Option(None, "--alarms", envvar="TRIAGE_ALARMS", dir_okay=False,
                                help="Alarm file: new alarms are added to it, and `triage "
                                     "run --alarms` reads it (the stop-rule)."),
    report: Path = typer.Option(Path("monitor_report.html"), "--report",
                                help="Where to write the window's HTML report."),
    recent_runs: int = typer.Option(1, "--recent-runs", min=1,
                                    help="Runs in the recent window of the labelled-"
                                         "performance rule."),
    log: bool = typer.Option(True, "--log/--no-log",
                             help=f"Record this check (alarms, report) in MLflow experiment "
                                  f"'{MONITOR_EXPERIMENT}'."),
    device_group: str = typer.Option(None, "--device-group",
                                     help="clear: only this device group's alarms."),
    alarm: str = typer.Option(None, "--alarm", help="clear: only this alarm id."),
    by: str = typer.Option("", "--by", help="clear (required): who clears (recorded)."),
    json_out: bool = JSON,
) -> None:
    """Check a window of runs for drift and performance drops; raise and print alarms.

    Exit codes: 0 no active alarm; 1 an alarm is active (raised now or before); 2 bad
    argument; 3 the tracking server cannot be reached.
    `triage monitor clear --alarms FILE [--device-group G | --alarm ID] --by NAME` clears.
    """
    from triage.errors import ConfigError

    if runs and runs[0] == "clear":
        _clear(runs[1:], alarms, device_group, alarm, by, json_out)
        return
    if device_group is not None or alarm is not None:
        raise ConfigError("--device-group and --alarm choose the alarms `triage monitor "
                          "clear` clears; a check always looks at every device group.")
    _check(runs or [], experiment, since, labels, label_store, alarms, report, recent_runs,
           log, json_out)


def _clear(extra: list[str], alarms: Path | None, device_group: str | None,
           alarm: str | None, by: str, json_out: bool) -> None:
    """`triage monitor clear`: clear the matching active alarms, recording who cleared."""
    from triage.errors import ConfigError
    from triage.monitor.alarms import AlarmState

    if extra:
        raise ConfigError(f"`triage monitor clear` takes no run folder, got "
                          f"{' '.join(extra)}; choose alarms with --device-group or --alarm.")
    if alarms is None:
        raise ConfigError("`triage monitor clear` needs --alarms FILE (or TRIAGE_ALARMS).")
    if not by.strip():
        raise ConfigError("`triage monitor clear` needs --by NAME: who clears the alarms "
                          "(recorded with each one).")
    state = AlarmState.load(alarms)
    active = state.active()
    cleared = state.clear(device_group=device_group, alarm=alarm, by=by.strip())
    if active and not cleared:
        chosen = " and ".join(f"{flag} {value!r}" for flag, value in
                              (("--device-group", device_group), ("--alarm", alarm))
                              if value is not None)
        listed = ", ".join(f"{a.id} (device group {a.device_group})" for a in active)
        raise ConfigError(f"No active alarm in {alarms} matches {chosen}; nothing was "
                          f"cleared. Active alarms: {listed}.")
    state.save()
    if json_out:
        echo_json({"cleared": [a.id for a in cleared]})
    else:
        typer.echo(f"cleared {len(cleared)} alarm(s): "
                   f"{', '.join(a.id for a in cleared) or 'none was active'}")


def _check(runs, experiment, since, labels, label_store, alarms, report, recent_runs, log,
           json_out) -> None:
    from triage.errors import ConfigError
    from triage.io import atomic_write_text, check_out_file
    from triage.monitor.alarms import AlarmState
    from triage.monitor.monitor_report import render_monitor_report
    from triage.monitor.sources import (
        outcomes_from_store,
        parse_since,
        read_labels_csv,
        records_from_folders,
        records_from_mlflow,
    )
    from triage.monitor.window import analyze, outcomes_from_labels

    since_at = parse_since(since, "--since")
    check_out_file(report, "--report")
    if label_store is not None:
        from triage.feedback.store import LabelStore

        with LabelStore(label_store):  # not a label store: refused before any run is read
            pass
    if runs:
        records, run_rows = records_from_folders(runs, since_at)
    else:
        if labels is not None:
            raise ConfigError("--labels joins labels to studies by UID, which only run "
                              "folders hold; pass the run folders, or use --label-store.")
        from triage.registry.experiment import check_experiment_name

        check_experiment_name(experiment, "--experiment")
        records, run_rows = records_from_mlflow(experiment, since_at), []
    if not records:
        raise ConfigError("No run to monitor: no folder given and none in the experiment "
                          "(after --since).")
    outcomes = []
    if labels is not None:
        outcomes += outcomes_from_labels(read_labels_csv(labels), run_rows)
    if label_store is not None:
        outcomes += outcomes_from_store(label_store, records)
    state = AlarmState.load(alarms) if alarms is not None else None
    result = analyze(records, outcomes=outcomes, state=state, recent_runs=recent_runs)
    raised = result.pop("alarms")
    if state is not None:
        raised = state.raise_alarms(raised)
        state.save()
        active = state.active()
    else:
        active = raised
    html = render_monitor_report(result, raised, active)
    atomic_write_text(report, html)
    payload = {**result, "alarms_raised": [a.__dict__ for a in raised],
               "alarms_active": [a.__dict__ for a in active], "report": str(report)}
    if log:
        payload["mlflow_run_id"] = _log(payload, html, raised, active)
    if json_out:
        echo_json(payload)
    else:
        typer.echo(f"{len(records)} runs, {sum(r.studies for r in records)} studies, "
                   f"{len(result['device_groups'])} device groups; report: {report}")
        for a in raised:
            typer.secho(f"ALARM {a.id}: {a.detail}", fg=typer.colors.RED)
        for a in active:
            if a not in raised:
                typer.secho(f"active {a.id} (since {a.raised_utc}): {a.detail}",
                            fg=typer.colors.YELLOW)
        if not active:
            typer.echo("no active alarm")
    if active:
        raise typer.Exit(1)


def _log(payload: dict, html: str, raised: list, active: list) -> str:
    from triage.monitor.runlog import metric_key
    from triage.registry.tracking import resolve_tracking_uri, start_run

    uri = resolve_tracking_uri(None)
    with start_run(MONITOR_EXPERIMENT, run_name="monitor", uri=uri,
                   tags={"triage.kind": "monitor",
                         "triage.alarms_raised": "; ".join(a.id for a in raised) or "none",
                         "triage.alarms_active": "; ".join(a.id for a in active) or "none"}
                   ) as run:
        metrics = {"runs": len(payload["runs"]), "alarms_raised": len(raised),
                   "alarms_active": len(active)}
        for group, entry in payload["device_groups"].items():
            for statistic in ("score", "input"):
                metrics[metric_key(f"{group}.{statistic}.cusum_peak")] = \
                    entry[statistic]["cusum_peak"]
        run.log_metrics(metrics)
        run.log_json(payload, "monitor.json")
        run.log_text(html, "monitor_report.html")
        return run.run_id


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
