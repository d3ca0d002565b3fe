"""After the worklists: the run's record, its report, and its MLflow run.

`finish_run` runs once `run_export` has written the worklists (so nothing here can lose
them): it writes ``run_record.json`` and ``report.html`` beside the worklists, then records
the run in MLflow (`log_run`). A tracking failure leaves both files and the worklists in
place and raises: `EnvironmentalError` for an unreachable server or a failing disk (the
CLI exits 3; rerunning the same command resumes, triages nothing again and records the run),
`TrackingError` for anything else (exit 2).

What MLflow receives (experiment ``triage-runs`` by default) holds no study identifier and
no image: counts, stage times, score and input-distance summaries, the record (per-group
histograms and the scores as numbers) and the public report summary.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.errors import EnvironmentalError, describe_environmental, is_environmental
from triage.monitor.record import RunRecord, build_record

LOGGER = logging.getLogger(__name__)
DEFAULT_EXPERIMENT = "triage-runs"
RECORD_ARTIFACT = "run_record.json"
SUMMARY_ARTIFACT = "report_summary.html"
RUN_KIND_TAG = "triage.kind"


def metric_key(text: str) -> str:
    """`text` with characters MLflow refuses in metric names replaced by ``_``.

    Example:
        >>> metric_key("device.GE Revolution (HD).n")
        'device.GE Revolution _HD_.n'
    """
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)[:250]


def run_metrics(record: RunRecord) -> dict[str, float]:
    """The run's metrics: counts per route and per device group x route, score and input
    distance summaries per group, stage times."""
    metrics: dict[str, float] = {"studies": record.studies, "seconds": record.seconds}
    for route, n in record.route_counts().items():
        metrics[f"route.{route}"] = n
    for name, group in record.groups.items():
        data = group.to_dict()
        metrics[metric_key(f"device.{name}.n")] = group.n
        for route, n in group.routes.items():
            metrics[metric_key(f"device.{name}.route.{route}")] = n
        for what in ("score", "distance"):
            for stat in ("mean", "std", "p50", "p95"):
                value = data[f"{what}_summary"][stat]
                if value is not None:
                    metrics[metric_key(f"device.{name}.{what}.{stat}")] = value
    for stage, seconds in record.stage_seconds.items():
        metrics[metric_key(f"stage_seconds.{stage}")] = seconds
    return metrics


def log_run(record: RunRecord, summary_html: str, *, experiment: str = DEFAULT_EXPERIMENT,
            uri: str | None = None) -> str:
    """Record one run in MLflow; return its run id.

    Tags link the registered model version (``triage.model_version_uri`` =
    ``models:/<name>/<version>`` when the model came from the registry) and name the rules
    version and the active alarms.
    """
    from triage.registry.tracking import resolve_tracking_uri, start_run

    resolved = resolve_tracking_uri(uri)  # `start_run` checks it
    tags: dict[str, Any] = {RUN_KIND_TAG: "run", "triage.model_name": record.model_name,
                            "triage.model_version": record.model_version,
                            "triage.rules_version": record.rules_version,
                            "triage.finished_utc": record.finished_utc,
                            "triage.alarms_active": "; ".join(record.alarms) or "none"}
    if record.model_version.isdigit():
        tags["triage.model_version_uri"] = f"models:/{record.model_name}/{record.model_version}"
    with start_run(experiment, run_name=f"run-{record.finished_utc or 'empty'}", tags=tags,
                   uri=resolved) as run:
        run.log_params({"model_name": record.model_name,
                        "model_version": record.model_version,
                        "rules_version": record.rules_version,
                        "temperature": record.temperature})
        run.log_metrics(run_metrics(record))
        record.run_id = run.run_id
        run.log_json(record.to_dict(), RECORD_ARTIFACT)
        run.log_text(summary_html, SUMMARY_ARTIFACT)
        return run.run_id


@dataclass(frozen=True)
class FinishedRun:
    """What `finish_run` wrote: the record (with its MLflow run id) and the report."""

    record: RunRecord
    report_path: Path
    record_path: Path


def finish_run(out_dir: Path | str, rows: list[Any], summary: Mapping[str, Any], *,
               reference: Mapping[str, Any] | None = None, alarms: tuple[str, ...] = (),
               experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None,
               track: bool = True) -> FinishedRun:
    """Write ``run_record.json`` and ``report.html`` into `out_dir`, then log to MLflow.

    Raises:
        EnvironmentalError: the tracking server cannot be reached, or the disk failed; the
            message says the worklists are written.
        TrackingError: MLflow refused the run for another reason.
    """
    from triage.monitor.run_report import render_run_report, write_run_report
    from triage.registry.tracking import TrackingError

    out_dir = Path(out_dir)
    record = build_record(rows, dict(summary), alarms=alarms, reference=dict(reference or {}))
    record_path = record.write(out_dir)
    report_path = write_run_report(out_dir, record, rows, reference=reference)
    if track:
        try:
            log_run(record, render_run_report(record, reference=reference, public=True),
                    experiment=experiment, uri=uri)
        except Exception as err:
            where = f"the worklists and {report_path.name} are written in {out_dir}"
            if is_environmental(err):
                raise EnvironmentalError(
                    f"Recording the run in MLflow failed ({describe_environmental(err)}); "
                    f"{where}. Fix the tracking server and rerun the same command: it "
                    f"triages nothing again and records the run.") from err
            raise TrackingError(f"Recording the run in MLflow failed ({type(err).__name__}: "
                                f"{err}); {where}.") from err
        record.write(out_dir)  # now with its run id
    return FinishedRun(record, report_path, record_path)
