"""Where `triage monitor` finds its runs (run folders, or an MLflow experiment) and labels
(a labels CSV, or the feedback label store)."""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.monitor.record import RunRecord, read_record
from triage.monitor.runlog import RECORD_ARTIFACT, RUN_KIND_TAG
from triage.monitor.window import Outcome

LOGGER = logging.getLogger(__name__)
SINCE_FORMATS = ("YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM[:SS] with an optional "
                 "offset (Z, +01:00; UTC without one)")


def parse_since(text: str, option: str = "--since") -> datetime | None:
    """`text` as an aware datetime (an ISO 8601 date or date-time; UTC when it names no
    offset); None for an empty `text`.

    Raises:
        ConfigError: `text` is not an ISO 8601 date or date-time (the message names
            `option` and the accepted formats).

    Example:
        >>> parse_since("2025-03-01")
        datetime.datetime(2025, 3, 1, 0, 0, tzinfo=datetime.timezone.utc)
        >>> parse_since("2025-3-1")
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: --since '2025-3-1' is not an ISO 8601 date or date-time; ...
    """
    if not text.strip():
        return None
    when = _utc(text.strip())
    if when is None:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 date or date-time; give "
                          f"{SINCE_FORMATS}, e.g. 2025-03-01 or 2025-03-01T08:00Z.")
    return when


def _utc(text: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime (naive: UTC); None when it is not one."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _finished_since(finished_utc: str, since: datetime | None) -> bool:
    """Whether a run that finished at `finished_utc` is in the window from `since` on (a
    run without a readable finishing time is not, once `since` is given)."""
    if since is None:
        return True
    finished = _utc(finished_utc)
    return finished is not None and finished >= since


def records_from_folders(folders: Sequence[Path | str], since: datetime | None = None
                         ) -> tuple[list[RunRecord], list[list[Any]]]:
    """The records of run folders (finished at or after `since`, `parse_since`) and their
    worklist rows."""
    from triage.run.worklist import WORKLIST_NAME, read_worklist

    pairs = []
    for folder in folders:
        record = read_record(folder)
        if _finished_since(record.finished_utc, since):
            worklist = Path(folder) / WORKLIST_NAME
            pairs.append((record, read_worklist(worklist) if worklist.is_file() else []))
    pairs.sort(key=lambda p: p[0].finished_utc)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def records_from_mlflow(experiment: str, since: datetime | None = None,
                        uri: str | None = None) -> list[RunRecord]:
    """The records the `triage run`s of MLflow `experiment` logged (finished at or after
    `since`, `parse_since`), oldest first.

    Raises:
        ConfigError: no such experiment.
    """
    from mlflow.exceptions import MlflowException

    from triage.registry.tracking import client_for, resolve_tracking_uri

    resolved = resolve_tracking_uri(uri)
    client = client_for(resolved)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ConfigError(f"MLflow experiment '{experiment}' does not exist at {resolved}; "
                          f"give the --experiment `triage run` recorded into.")
    # Only finished runs: one killed while it was being recorded stays RUNNING without
    # its record (the rerun of the same command records the run again).
    query = (f"tags.`{RUN_KIND_TAG}` = 'run' and attributes.status = 'FINISHED'")
    runs = client.search_runs([found.experiment_id], filter_string=query,
                              max_results=50000)
    records = []
    with tempfile.TemporaryDirectory(prefix="triage-monitor-") as tmp:
        for run in runs:
            if not _finished_since(run.data.tags.get("triage.finished_utc", ""), since):
                continue
            try:
                local = client.download_artifacts(run.info.run_id, RECORD_ARTIFACT, tmp)
            except MlflowException as err:
                LOGGER.warning("MLflow run %s has no readable %s (%s); left out of the "
                               "window.", run.info.run_id, RECORD_ARTIFACT, err.error_code)
                continue
            records.append(RunRecord.from_dict(json.loads(Path(local).read_text("utf-8"))))
    return sorted(records, key=lambda r: r.finished_utc)


def read_labels_csv(path: Path | str) -> dict[str, int]:
    """Study UID -> finding from a CSV with columns ``study_uid`` and ``label`` (0/1).

    Raises:
        ConfigError: missing columns or a label that is not 0 or 1.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _labels(csv.DictReader(fh), path)
    except UnicodeDecodeError as err:
        raise ConfigError(f"Labels file {path} is not UTF-8 text (byte {err.start}); save it "
                          f"as UTF-8 CSV.") from err
    except OSError as err:
        raise ConfigError(f"Labels file {path} cannot be read: "
                          f"{err.strerror or type(err).__name__}.") from err


def _labels(reader: csv.DictReader, path: Path | str) -> dict[str, int]:
    if not reader.fieldnames or not {"study_uid", "label"} <= set(reader.fieldnames):
        raise ConfigError(f"Labels file {path} needs columns study_uid and label; it has "
                          f"{', '.join(reader.fieldnames or [])}.")
    out = {}
    for n, row in enumerate(reader, start=2):
        if row["label"].strip() not in ("0", "1"):
            raise ConfigError(f"Labels file {path} line {n}: label must be 0 or 1, got "
                              f"{row['label']!r}.")
        out[row["study_uid"].strip()] = int(row["label"])
    return out


def outcomes_from_store(path: Path | str, records: Sequence[RunRecord]) -> list[Outcome]:
    """Labelled outcomes from the feedback label store (docs/feedback.md), each assigned
    to the first run of the window that finished at or after the study was processed."""
    from triage.feedback.store import LabelStore

    finished = [r.finished_utc for r in records]
    out = []
    with LabelStore(path) as store:
        for label in store.labels():
            run = next((i for i, f in enumerate(finished) if f >= label.processed_at), None)
            if run is not None:
                out.append(Outcome(run, label.device_group, label.route, int(label.finding)))
    return out
