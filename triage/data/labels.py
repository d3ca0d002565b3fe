"""Labels files: a UTF-8 CSV that gives studies a label, keyed by accession number or Study UID.

A labels file is what a site has: a spreadsheet export from the RIS or a reading study,
one row per study, a key column and a label column (optionally a `device_group` column
that overrides the scanner's group). `read_labels` maps each label value to 0 or 1 and
checks every row. What makes the file unusable (not UTF-8, a key or label column
missing) raises `LabelsError`; a problem of one row (an empty key, a value it cannot map,
the same key twice) becomes a `LabelIssue` and the row is left out, so that one bad row
does not stop a build of thousands.

The key values are identifiers when they are accession numbers: they are used for the
join and never shown. Issues name rows by their line number in the file (1 = header).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from triage.errors import ConfigError, LabelsError

DEVICE_COLUMN = "device_group"
DEFAULT_POSITIVE_VALUES = ("1", "true", "yes", "positive", "pos")
DEFAULT_NEGATIVE_VALUES = ("0", "false", "no", "negative", "neg")
_DEVICE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # as the manifest schema's device_group
_SHOWN_VALUE = 24  # characters of an unmappable value quoted in an issue


class JoinKey(StrEnum):
    """What the labels file's key column holds, and so how rows join the export's studies."""

    ACCESSION = "accession"
    STUDY_UID = "study_uid"


#: Key column names looked for (case-insensitive, in order) when none is given.
KEY_COLUMNS: dict[JoinKey, tuple[str, ...]] = {
    JoinKey.ACCESSION: ("accession_number", "accession", "accessionnumber", "acc"),
    JoinKey.STUDY_UID: ("study_uid", "studyinstanceuid", "study_instance_uid"),
}


class IssueKind(StrEnum):
    """Row problems of a labels file (the row is left out unless said otherwise)."""

    EMPTY_KEY = "empty-key"
    UNKNOWN_VALUE = "unknown-label-value"
    DUPLICATE_KEY = "duplicate-key"  # same label again: harmless, the first row is kept
    CONFLICTING_LABELS = "conflicting-labels"  # every row of that key is left out
    BAD_DEVICE_GROUP = "bad-device-group"  # the override is ignored, DICOM's group is used


@dataclass(frozen=True)
class LabelIssue:
    """One row problem: the kind, the line (1 = header), the column and a sentence."""

    kind: IssueKind
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column '{self.column}': {self.message}"


@dataclass(frozen=True)
class LabelSpec:
    """How to read a labels file.

    Attributes:
        key: what the key column holds (`JoinKey` or its value).
        key_column: the key column's name; None looks for the usual names (`KEY_COLUMNS`).
        label_column: the label column's name.
        positive_values: values meaning 1 (case-insensitive, surrounding spaces ignored).
        negative_values: values meaning 0; any other value is reported and its row left out.

    Raises:
        ConfigError: an unknown key, no positive value, or a value in both lists.
    """

    key: JoinKey = JoinKey.ACCESSION
    key_column: str | None = None
    label_column: str = "label"
    positive_values: tuple[str, ...] = DEFAULT_POSITIVE_VALUES
    negative_values: tuple[str, ...] = DEFAULT_NEGATIVE_VALUES

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "key", JoinKey(self.key))
        except ValueError as err:
            raise ConfigError(f"key: '{self.key}' is not one of "
                              f"{', '.join(k.value for k in JoinKey)}.") from err
        for name in ("positive_values", "negative_values"):
            values = getattr(self, name)
            values = values.split(",") if isinstance(values, str) else values
            object.__setattr__(self, name, tuple(dict.fromkeys(
                v.strip().lower() for v in values if v.strip())))
        if not self.positive_values:
            raise ConfigError("positive_values: at least one value must mean a finding (1).")
        both = sorted(set(self.positive_values) & set(self.negative_values))
        if both:
            raise ConfigError(f"label values {', '.join(both)} are both positive and negative; "
                              "list each value once (--positive-values / --negative-values).")

    def map_value(self, value: str) -> int | None:
        """1, 0, or None when `value` is in neither list.

        Example:
            >>> LabelSpec().map_value(" Yes ")
            1
        """
        value = value.strip().lower()
        if value in self.positive_values:
            return 1
        if value in self.negative_values:
            return 0
        return None


@dataclass(frozen=True)
class LabelEntry:
    """The label of one key: the line it came from, 0/1, and the device group override."""

    line: int
    label: int
    device_group: str | None = None


@dataclass
class LabelTable:
    """A labels file read and checked.

    Attributes:
        path: the file.
        key_column: the key column used.
        label_column: the label column used.
        rows: data rows read (blank lines not counted).
        entries: key -> its label; identifiers when the key is an accession: never log.
        rejected: keys whose every row was left out (conflicts, unknown values), so that
            the build does not report their studies again as having no label.
        issues: every row problem, in file order.
    """

    path: Path
    key_column: str
    label_column: str
    rows: int = 0
    entries: dict[str, LabelEntry] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    issues: list[LabelIssue] = field(default_factory=list)


def read_labels(path: Path | str, spec: LabelSpec | None = None) -> LabelTable:
    """Read a labels CSV, map its labels to 0/1 and check every row.

    Args:
        path: the labels file (UTF-8, a byte-order mark is allowed).
        spec: how to read it; `LabelSpec()` when None.

    Returns:
        The table; row problems are in ``issues``.

    Raises:
        LabelsError: the file is missing, empty, not UTF-8 or not CSV, or lacks the key
            or label column; the message names the file, the line and the column.
    """
    spec = spec or LabelSpec()
    path = Path(path)
    if not path.is_file():
        raise LabelsError(path, "file not found; pass the labels CSV with --labels.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data, err) from err
    try:
        rows = list(_records(text))
    except csv.Error as err:
        raise LabelsError(path, f"not a readable CSV ({err}).") from err
    if not rows:
        raise LabelsError(path, "the file is empty; it needs a header line and one row per "
                                "study.", line=1)
    (_, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    key_col = _key_column(path, header, spec)
    label_col = _find_column(path, header, spec.label_column, "--label-column")
    table = LabelTable(path, header[key_col], header[label_col])
    device_col = next((i for i, h in enumerate(header) if h.lower() == DEVICE_COLUMN), None)
    labels_of: dict[str, set[int]] = {}
    for line, values in body:
        if not any(v.strip() for v in values):
            continue  # a blank line
        table.rows += 1
        values = values + [""] * (len(header) - len(values))
        _read_row(table, spec, line, values, key_col, label_col, device_col, labels_of)
    for key in [k for k, labels in labels_of.items() if len(labels) > 1]:
        del table.entries[key]
        table.rejected.add(key)
    return table


def _records(text: str):
    """(line where the record starts, fields) for every CSV record of `text`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for values in reader:
        yield start, values
        start = reader.line_num + 1


def _read_row(table: LabelTable, spec: LabelSpec, line: int, values: list[str], key_col: int,
              label_col: int, device_col: int | None, labels_of: dict[str, set[int]]) -> None:
    def issue(kind: IssueKind, column: str, message: str) -> None:
        table.issues.append(LabelIssue(kind, line, column, message))

    key = values[key_col].strip()
    if not key:
        issue(IssueKind.EMPTY_KEY, table.key_column, "is empty; the row is left out.")
        return
    raw = values[label_col]
    label = spec.map_value(raw)
    if label is None:
        shown = raw.strip()
        shown = shown if len(shown) <= _SHOWN_VALUE else shown[:_SHOWN_VALUE] + "..."
        issue(IssueKind.UNKNOWN_VALUE, table.label_column,
              f"'{shown}' is neither a positive value ({', '.join(spec.positive_values)}) "
              f"nor a negative one ({', '.join(spec.negative_values) or 'none'}); the row is "
              "left out. Map it with --positive-values / --negative-values.")
        if key not in table.entries:
            table.rejected.add(key)
        return
    device = values[device_col].strip() if device_col is not None else ""
    if device and not _DEVICE.match(device):
        issue(IssueKind.BAD_DEVICE_GROUP, DEVICE_COLUMN,
              f"'{device[:_SHOWN_VALUE]}' is not a lowercase slug like 'vendor-model'; the "
              "device group read from DICOM is used instead.")
        device = ""
    first = table.entries.get(key)
    labels_of.setdefault(key, set()).add(label)
    if first is None:
        table.entries[key] = LabelEntry(line, label, device or None)
        table.rejected.discard(key)
    elif first.label == label:
        issue(IssueKind.DUPLICATE_KEY, table.key_column,
              f"same {table.key_column} as line {first.line}, same label; line {first.line} "
              "is used.")
    else:
        issue(IssueKind.CONFLICTING_LABELS, table.key_column,
              f"same {table.key_column} as line {first.line} but label {label}, not "
              f"{first.label}; the study is left out until one of the rows is fixed.")


def _key_column(path: Path, header: list[str], spec: LabelSpec) -> int:
    if spec.key_column:
        return _find_column(path, header, spec.key_column, "--key-column")
    lowered = [h.lower() for h in header]
    for name in KEY_COLUMNS[spec.key]:
        if name in lowered:
            return lowered.index(name)
    names = KEY_COLUMNS[spec.key]
    raise LabelsError(
        path, f"no key column for --key {spec.key.value} (looked for "
              f"{', '.join(names)}); the header has {', '.join(header) or 'no columns'}. "
              "Name it with --key-column, or pass --key study_uid for a column of Study UIDs.",
        line=1, column=names[0])


def _find_column(path: Path, header: list[str], name: str, option: str) -> int:
    if name in header:
        return header.index(name)
    lowered = [h.lower() for h in header]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    close = difflib.get_close_matches(name, header, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise LabelsError(path, f"column '{name}' is missing; the header has "
                            f"{', '.join(header) or 'no columns'}.{hint} Name the column "
                            f"with {option}.", line=1, column=name)


def _not_utf8(path: Path, data: bytes, err: UnicodeDecodeError) -> LabelsError:
    """The error naming the line and column of the first byte that is not UTF-8."""
    line = data.count(b"\n", 0, err.start) + 1
    start = data.rfind(b"\n", 0, err.start) + 1
    header_line = data.split(b"\n", 1)[0].decode("utf-8-sig", "replace")
    header = next(csv.reader([header_line]), [])
    prefix = data[start:err.start].decode("utf-8", "replace")
    index = len(next(csv.reader([prefix]), [""])) - 1 if prefix else 0
    column = header[index].strip() if index < len(header) else None
    return LabelsError(path, f"not UTF-8 (byte 0x{data[err.start]:02x} cannot be decoded); "
                             "save the file as UTF-8 (in Excel: 'CSV UTF-8').",
                       line=line, column=column)
