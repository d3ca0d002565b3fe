"""Read a reviewed worklist: the run's worklist CSV with the reader's decision added.

Required columns: ``study_uid`` and ``finding``; optional ``reader`` (a staff id) and
``read_date``. Every other column (the worklist's own, identifiers included) is ignored:
the label store takes what it needs from the run's journal. A row whose ``finding`` is
empty was not read yet and is skipped. Rows are numbered as a spreadsheet shows them: the
header is row 1, the first study row 2.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from triage.feedback.errors import ReviewFileError

REQUIRED = ("study_uid", "finding")
OPTIONAL = ("reader", "read_date")
_DATE = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")
FINDINGS = {"positive": 1, "1": 1, "yes": 1, "negative": 0, "0": 0, "no": 0}


@dataclass(frozen=True)
class Decision:
    """One reader decision.

    Attributes:
        row: the CSV row (header = 1).
        study_uid: the study.
        finding: 1 (finding present) or 0.
        reader: the reader's id as written (empty when not given).
        read_date: ``YYYY-MM-DD`` (empty when not given).
    """

    row: int
    study_uid: str
    finding: int
    reader: str = ""
    read_date: str = ""


@dataclass(frozen=True)
class ReviewFile:
    """The decisions of one reviewed worklist.

    Attributes:
        path: the file.
        decisions: one per decided row, in file order.
        undecided: rows with an empty finding (not read yet).
    """

    path: Path
    decisions: tuple[Decision, ...]
    undecided: int


def parse_finding(value: str) -> int | None:
    """1, 0, or None for an empty cell.

    Raises:
        ValueError: any other value.

    Example:
        >>> parse_finding(" Yes "), parse_finding("negative"), parse_finding("")
        (1, 0, None)
    """
    text = value.strip().lower()
    if not text:
        return None
    if text not in FINDINGS:
        raise ValueError(f"unknown finding {value.strip()!r}; write positive or negative "
                         f"(also accepted: 1/0, yes/no)")
    return FINDINGS[text]


def parse_read_date(value: str) -> str:
    """``YYYY-MM-DD`` from ``YYYY-MM-DD`` or ``YYYYMMDD`` (empty stays empty).

    Raises:
        ValueError: not such a date.
    """
    text = value.strip()
    if not text:
        return ""
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text.replace("-", "")).isoformat()
    except ValueError as err:
        raise ValueError(f"read date {text!r} is not a date; write YYYY-MM-DD") from err


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        row = data.count(b"\n", 0, err.start) + 1
        header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
        index = data.count(b",", line_start, err.start)
        column = header[index].strip() if index < len(header) else ""
        raise ReviewFileError(path, row, column, f"is not UTF-8 (byte 0x{data[err.start]:02X}); "
                                                 f"save the file as UTF-8 CSV.") from err


def read_review_file(path: Path | str) -> ReviewFile:
    """Read and check a reviewed worklist.

    Raises:
        ReviewFileError: the file is missing or not UTF-8, a required column is missing,
            a study UID is empty, a finding or read date is not understood.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ReviewFileError(path, None, "", f"cannot be read ({err.strerror}).") from err
    reader = csv.reader(io.StringIO(_decode(path, data), newline=""))
    header = [h.strip() for h in next(reader, [])]
    for column in REQUIRED:
        if column not in header:
            raise ReviewFileError(path, 1, column,
                                  "is missing; a reviewed worklist needs the columns "
                                  "study_uid and finding (positive/negative), optionally "
                                  "reader and read_date.")
    where = {c: header.index(c) for c in (*REQUIRED, *OPTIONAL) if c in header}

    def cell(values: list[str], column: str) -> str:
        i = where.get(column)
        return values[i] if i is not None and i < len(values) else ""

    decisions, undecided = [], 0
    for row, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # a blank line
        uid = cell(values, "study_uid").strip()
        if not uid:
            raise ReviewFileError(path, row, "study_uid", "is empty; every row names its "
                                                          "study.")
        try:
            finding = parse_finding(cell(values, "finding"))
        except ValueError as err:
            raise ReviewFileError(path, row, "finding", f"{err}.") from err
        try:
            read_date = parse_read_date(cell(values, "read_date"))
        except ValueError as err:
            raise ReviewFileError(path, row, "read_date", f"{err}.") from err
        if finding is None:
            undecided += 1
            continue
        decisions.append(Decision(row, uid, finding, cell(values, "reader").strip(),
                                  read_date))
    return ReviewFile(path, tuple(decisions), undecided)
