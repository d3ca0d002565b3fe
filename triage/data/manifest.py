"""Training manifests: the documented schema (docs/data_manifests.md) and its validation.

A manifest is a CSV with one row per study. Splits are by patient: every study of a
`patient_key` must sit in the same split. Validation collects *every* problem with its CSV
line number before raising, so a user fixes a file in one pass.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pandas as pd

from triage.errors import ConfigError, ManifestError
from triage.io import atomic_open


class Split(StrEnum):
    """Allowed values of the `split` column."""

    TRAIN = "train"
    VAL = "val"
    CALIB = "calib"
    TEST = "test"


def check_splits(names: Iterable[str], option: str = "--split") -> tuple[Split, ...]:
    """`names` as splits, before any work.

    Raises:
        ConfigError: a name that is not a split (the message names `option` and the
            splits).

    Example:
        >>> check_splits(["test", "calib"])
        (<Split.TEST: 'test'>, <Split.CALIB: 'calib'>)
        >>> check_splits(["tset"])
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: --split 'tset' is not a split; splits are train, val, ...
    """
    out = []
    for name in names:
        try:
            out.append(Split(name))
        except ValueError:
            valid = [s.value for s in Split]
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{option} {name!r} is not a split; splits are "
                              f"{', '.join(valid)}.{hint}") from None
    return tuple(out)


REQUIRED_COLUMNS = ("study_uid", "patient_key", "label", "device_group", "split")
OPTIONAL_COLUMNS = ("series_uid", "export_path")
# Free-form extra columns are allowed under these prefixes (ground truth, notes).
EXTRA_PREFIXES = ("gt_", "meta_")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PATIENT_KEY = re.compile(r"^[A-Za-z0-9._-]{4,64}$")
_DEVICE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_FIRST_DATA_LINE = 2  # line 1 is the header


@dataclass(frozen=True)
class ManifestIssue:
    """One problem: the CSV line (1 = header), the column, the bad value and why."""

    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "header"
        col = f", column '{self.column}'" if self.column else ""
        return f"{where}{col}: {self.message}"


def _valid_uid(value: str) -> bool:
    return len(value) <= 64 and bool(_UID.match(value)) and not any(
        part.startswith("0") and part != "0" for part in value.split(".")
    )


def _column_issues(columns: list[str]) -> list[ManifestIssue]:
    issues = []
    for col in REQUIRED_COLUMNS:
        if col not in columns:
            issues.append(ManifestIssue(None, col, f"required column '{col}' is missing."))
    for col in columns:
        if col in MANIFEST_COLUMNS or col.startswith(EXTRA_PREFIXES):
            continue
        close = difflib.get_close_matches(col, MANIFEST_COLUMNS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        issues.append(ManifestIssue(
            None, col,
            f"unknown column '{col}'.{hint} Known columns: {', '.join(MANIFEST_COLUMNS)}; "
            f"extra columns must start with {' or '.join(EXTRA_PREFIXES)}.",
        ))
    return issues


def validate_manifest(df: pd.DataFrame) -> list[ManifestIssue]:
    """Every problem in `df` (read with ``dtype=str``); an empty list means valid."""
    issues = _column_issues(list(df.columns))
    if any(i.line is None and "missing" in i.message for i in issues):
        return issues
    if df.empty:
        return issues + [ManifestIssue(None, None, "the manifest has no rows.")]

    splits = {s.value for s in Split}
    seen_uid: dict[str, int] = {}
    patient_split: dict[str, tuple[str, int]] = {}
    for pos, row in enumerate(df.itertuples(index=False)):
        line = pos + _FIRST_DATA_LINE
        rec = row._asdict()

        def bad(column: str, message: str, _line: int = line) -> None:
            issues.append(ManifestIssue(_line, column, message))

        uid = (rec["study_uid"] or "").strip()
        if not uid:
            bad("study_uid", "is empty.")
        elif not _valid_uid(uid):
            bad("study_uid", f"'{uid}' is not a DICOM UID (digits and dots, at most 64).")
        elif uid in seen_uid:
            bad("study_uid", f"'{uid}' already appears on line {seen_uid[uid]}.")
        else:
            seen_uid[uid] = line

        label = (rec["label"] or "").strip()
        if label not in ("0", "1"):
            bad("label", f"'{label}' is not 0 or 1.")

        device = (rec["device_group"] or "").strip()
        if not _DEVICE.match(device):
            bad("device_group", f"'{device}' is not a lowercase slug like 'vendor-model'.")

        split = (rec["split"] or "").strip()
        if split not in splits:
            bad("split", f"'{split}' is not one of {', '.join(sorted(splits))}.")

        key = (rec["patient_key"] or "").strip()
        if not _PATIENT_KEY.match(key):
            bad("patient_key", "is not a pseudonymous key of 4-64 characters [A-Za-z0-9._-].")
        elif split in splits:
            if key in patient_split and patient_split[key][0] != split:
                first_split, first_line = patient_split[key]
                bad("split", f"patient_key on line {first_line} is in split '{first_split}' "
                             f"but here in '{split}': splits are by patient.")
            patient_split.setdefault(key, (split, line))

        series = (rec.get("series_uid") or "").strip()
        if series and not _valid_uid(series):
            bad("series_uid", f"'{series}' is not a DICOM UID.")
    return issues


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read and validate a manifest CSV; `label` comes back as int.

    Raises:
        ManifestError: listing every problem found, with line numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [ManifestIssue(None, None, "file not found.")])
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        issue = ManifestIssue(None, None, f"not a readable CSV: {err}")
        raise ManifestError(path, [issue]) from err
    issues = validate_manifest(df)
    if issues:
        raise ManifestError(path, issues)
    df["label"] = df["label"].astype(int)
    return df


def write_manifest(df: pd.DataFrame, path: Path | str) -> Path:
    """Validate `df` and write it atomically with the schema's column order first."""
    path = Path(path)
    out = df.astype(str)
    issues = validate_manifest(out)
    if issues:
        raise ManifestError(path, issues)
    ordered = [c for c in MANIFEST_COLUMNS if c in out.columns]
    ordered += [c for c in out.columns if c not in ordered]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        out[ordered].to_csv(fh, index=False)
    return path
