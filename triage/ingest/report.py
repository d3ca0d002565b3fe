"""The per-study ingest report: one row per study found, written as an RFC 4180 CSV.

Rows carry UIDs, device group, geometry verdict and reasons, never patient identifiers.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from triage.csv_cells import restore_row, safe_row
from triage.dicom.device import UNKNOWN_DEVICE
from triage.dicom.scan.index import printable
from triage.io import atomic_open

EXPORT_ROOT = "(export root)"
"""How a reason names the export folder itself (a series whose files lie directly in it)."""


class IngestStatus(StrEnum):
    """Outcome of one study: a cached, trustworthy volume, or not."""

    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class StudyReport:
    """One row of the ingest report.

    Attributes:
        study_uid: Study Instance UID, or ``unreadable:<relative path>`` for a file whose
            study could not be read.
        status: ``ok`` when a trustworthy volume is in the cache.
        stage: where a failed study stopped: ``scan``, ``selection``, ``load``,
            ``preprocess`` or ``internal``; empty when ok.
        series_uid: the series chosen for classification (empty when none was).
        verdict: the geometry verdict of the chosen series (empty when not loaded).
        cache_key: key of the cached volume (empty when failed).
        cache_hit: the volume came from the cache (a rerun).
        reasons: why the study failed, ``; ``-separated.
        warnings: QC notes on an ok or failed study (resampled spacing, stray files, ...).
        rejected_series: every other series with its rejection reason.
    """

    study_uid: str
    status: IngestStatus
    stage: str = ""
    series_uid: str = ""
    series_number: str = ""
    modality: str = ""
    device_group: str = ""
    n_series: int = 0
    n_files: int = 0
    n_slices: int = 0
    verdict: str = ""
    cache_key: str = ""
    cache_hit: bool = False
    reasons: str = ""
    warnings: str = ""
    rejected_series: str = ""


REPORT_COLUMNS = [f.name for f in dataclasses.fields(StudyReport)]


def write_report(rows: Iterable[StudyReport], path: Path | str) -> Path:
    """Write the report atomically (UTF-8, RFC 4180 quoting), sorted by study UID.

    File names that are not UTF-8 on disk (lone surrogates in a reason) are written as
    backslash escapes rather than failing the write.
    """
    path = Path(path)
    ordered = sorted(rows, key=lambda r: r.study_uid)
    with atomic_open(path, "w", encoding="utf-8", errors="backslashreplace",
                     newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REPORT_COLUMNS, quoting=csv.QUOTE_MINIMAL,
                                lineterminator="\r\n")
        writer.writeheader()
        for row in ordered:
            values = dataclasses.asdict(row)
            values["status"] = row.status.value
            values["cache_hit"] = "true" if row.cache_hit else "false"
            writer.writerow(safe_row(values))  # text cells: no spreadsheet formulas
    return path


def read_report(path: Path | str) -> list[dict[str, str]]:
    """The rows of a report CSV as dicts of strings (text cells restored)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [restore_row(row) for row in csv.DictReader(fh)]


def inside_export(report: StudyReport, export_dir: Path | str) -> StudyReport:
    """The row with file paths relative to `export_dir` and non-UTF-8 names escaped.

    The export folder's own path often carries the patient's name; the path inside it is
    what finds the file. A path inside the export loses the export's prefix, and the export
    folder itself (the label of a series whose files lie directly in it) becomes
    `EXPORT_ROOT`. Every output that shows reasons (`triage ingest`'s report, `triage
    run`'s worklists and journal) passes its rows through here once.

    Example:
        >>> row = StudyReport("1.2", IngestStatus.FAILED, reasons="/x/DOE/a.dcm: cut; /x/DOE: gap")
        >>> inside_export(row, "/x/DOE").reasons
        'a.dcm: cut; (export root): gap'
    """
    root = str(export_dir).rstrip(os.sep) or os.sep
    # A path starts the text or follows punctuation or a space, never a name's character.
    start = r"(?<![\w.\-/\\])"
    inside = re.compile(start + re.escape(root.rstrip(os.sep) + os.sep))
    itself = re.compile(start + re.escape(root) + r"(?=$|[\s:;,)\]'\"])")

    def clean(text: str) -> str:
        if not text:
            return text
        return printable(itself.sub(EXPORT_ROOT, inside.sub("", text)))

    return dataclasses.replace(report, reasons=clean(report.reasons),
                               warnings=clean(report.warnings),
                               rejected_series=clean(report.rejected_series))


def summarize(rows: Iterable[StudyReport]) -> dict[str, dict[str, int]]:
    """Counts by status, by verdict, by device group and by failure stage."""
    rows = list(rows)
    return {
        "status": dict(Counter(r.status.value for r in rows)),
        "verdict": dict(Counter(r.verdict or "(not loaded)" for r in rows)),
        "device_group": dict(Counter(r.device_group or UNKNOWN_DEVICE for r in rows)),
        "failed_stage": dict(Counter(r.stage for r in rows if r.status is IngestStatus.FAILED)),
    }
