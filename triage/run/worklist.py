"""The worklists `triage run` writes: one row per study, with the identifiers a reader needs.

``worklist.csv`` holds exactly one row per study found in the export (unreadable files as
``unreadable:<path>`` pseudo-studies included), sorted by study UID; ``review_worklist.csv``
holds the ``review`` and ``failed`` rows in reading order (`review_order`). Both are UTF-8,
RFC 4180 (``csv`` module, minimal quoting, CRLF line ends) and written atomically; a text
cell a spreadsheet would run as a formula gets a leading quote (`triage.csv_cells`). The
columns are `WORKLIST_COLUMNS`, documented in docs/worklist.md; they only ever grow at the
end.

The worklist is the one output that carries patient identifiers (patient ID, accession
number, study date): they come from the scan's `InstanceRecord` and must never reach a log
line or an exception message.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.csv_cells import restore_row, safe_row

# Identifiers are read from the study's headers in `triage.dicom.scan.grouping` (where `data`
# needs them too, below `run`); re-exported for the worklist's callers.
from triage.dicom.scan.grouping import StudyIdentifiers, study_identifiers  # noqa: F401
from triage.io import atomic_open

WORKLIST_NAME = "worklist.csv"
REVIEW_NAME = "review_worklist.csv"
REVIEW_ROUTES = ("review", "failed")


@dataclass(frozen=True)
class WorklistRow:
    """One study of the worklist. See docs/worklist.md for every column.

    Attributes:
        study_uid: Study Instance UID, or ``unreadable:<relative path>``.
        accession_number: AccessionNumber (identifier; empty when unknown).
        patient_id: PatientID (identifier; empty when unknown).
        study_date: StudyDate as stored, ``YYYYMMDD`` (identifier; empty when unknown).
        modality: modality of the series used (empty when none was chosen).
        device_group: device group of the series used (or every group of the study).
        series_uid: the series classified (empty when none was).
        route: ``urgent``, ``routine``, ``review`` or ``failed``.
        priority: the route's priority; smaller is more urgent.
        p_calibrated: calibrated probability of a finding, 6 decimals; empty when the
            model did not score the study.
        reasons: why the study got its route, ``; ``-separated.
        rule_ids: the rules that fired, ``; ``-separated.
        ingest_status: ``ok`` or ``failed`` (ingest's status).
        verdict: geometry verdict of the series used.
        warnings: QC notes from ingest, ``; ``-separated.
        input_distance: distance of the study's HU statistics to the nearest training
            device (triage.run.distance), 4 decimals; empty when not measured.
        model_name: registered model name (or the bundle folder's name).
        model_version: registered model version (or the bundle's creation time).
        temperature: calibration temperature of the model.
        rules_version: version of the rules file that routed the study.
        processed_at: UTC time the row was produced, ISO 8601 to the second.
        guarantee: the certificate behind an urgent or routine route, e.g.
            ``pac/device a=0.01 d=0.05`` or ``marginal/pooled a=0.01``; empty otherwise.
        priority_reason: the priority in plain words (e.g. why a review is read early).
    """

    study_uid: str
    accession_number: str = ""
    patient_id: str = ""
    study_date: str = ""
    modality: str = ""
    device_group: str = ""
    series_uid: str = ""
    route: str = ""
    priority: int = 0
    p_calibrated: str = ""
    reasons: str = ""
    rule_ids: str = ""
    ingest_status: str = ""
    verdict: str = ""
    warnings: str = ""
    input_distance: str = ""
    model_name: str = ""
    model_version: str = ""
    temperature: str = ""
    rules_version: str = ""
    processed_at: str = ""
    guarantee: str = ""
    priority_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (JSON-ready, column order)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorklistRow:
        """A row from `to_dict` output (or a CSV dict); unknown keys are ignored."""
        values = {k: data[k] for k in WORKLIST_COLUMNS if k in data}
        values["priority"] = int(values.get("priority") or 0)
        return cls(**{k: v if k == "priority" else str(v) for k, v in values.items()})


WORKLIST_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WorklistRow))
"""The worklist columns, in order (stable: new columns are only appended)."""
NUMERIC_COLUMNS = frozenset({"priority", "p_calibrated", "input_distance", "temperature"})
"""Columns holding numbers; every other cell is text, neutralized against spreadsheet
formulas (`triage.csv_cells`)."""


def review_order(rows: Iterable[WorklistRow], processed: dict[str, int] | None = None
                 ) -> list[WorklistRow]:
    """The ``review`` and ``failed`` rows, in reading order.

    By priority (smaller first), then calibrated probability (highest first, none last),
    then processing order, then study UID.

    Args:
        rows: worklist rows.
        processed: study UID -> position in processing order (rows without one go last).
    """
    processed = processed or {}

    def key(row: WorklistRow) -> tuple:
        p = float(row.p_calibrated) if row.p_calibrated else None
        return (row.priority, p is None, -(p or 0.0),
                processed.get(row.study_uid, len(processed)), row.study_uid)

    return sorted((r for r in rows if r.route in REVIEW_ROUTES), key=key)


def _write_csv(rows: Iterable[WorklistRow], path: Path) -> None:
    # backslashreplace: a file name that is not UTF-8 on disk must not fail the worklist.
    with atomic_open(path, "w", encoding="utf-8", errors="backslashreplace",
                     newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=WORKLIST_COLUMNS, quoting=csv.QUOTE_MINIMAL,
                                lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(safe_row(row.to_dict(), NUMERIC_COLUMNS))


def write_worklists(rows: Iterable[WorklistRow], out_dir: Path | str,
                    processed: dict[str, int] | None = None) -> tuple[Path, Path]:
    """Write ``worklist.csv`` (all rows, by study UID) and ``review_worklist.csv``.

    Args:
        rows: one row per study.
        out_dir: the run's output folder.
        processed: study UID -> position, the tie-break of the review worklist after
            priority and probability (default: the order of `rows`, e.g. the export's);
            pass the order of arrival where it is reproducible (a listener).

    Returns:
        The paths of the worklist and the review worklist.

    Raises:
        ValueError: two rows have the same study UID.
    """
    rows = list(rows)
    seen = Counter(r.study_uid for r in rows)
    duplicated = sorted(uid for uid, n in seen.items() if n > 1)
    if duplicated:
        raise ValueError(f"The worklist must have one row per study; study {duplicated[0]} "
                         f"has {seen[duplicated[0]]} ({len(duplicated)} studies repeated).")
    if processed is None:
        processed = {r.study_uid: i for i, r in enumerate(rows)}
    out_dir = Path(out_dir)
    worklist, review = out_dir / WORKLIST_NAME, out_dir / REVIEW_NAME
    _write_csv(sorted(rows, key=lambda r: r.study_uid), worklist)
    _write_csv(review_order(rows, processed), review)
    return worklist, review


def read_worklist(path: Path | str) -> list[WorklistRow]:
    """The rows of a worklist CSV written by `write_worklists` (text cells restored)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [WorklistRow.from_dict(restore_row(row, NUMERIC_COLUMNS))
                for row in csv.DictReader(fh)]
