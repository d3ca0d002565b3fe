"""`build_manifest`: a data manifest from a site's own PACS export and a labels file.

The export is scanned as ingest scans it (`scan_export`, `group_studies`: headers only, no
pixel decoding). Each study is joined to its row of the labels file by accession number
or Study Instance UID; its `patient_key` is a keyed hash of the PatientID
(`triage.data.pseudonym`), its `device_group` the project's rule (the selected series'
Manufacturer + ManufacturerModelName) unless the labels file overrides it, and patients are
split by `triage.data.splitting`. An existing manifest is extended: its rows are kept as
they are, new studies are appended, and a patient already in it keeps its split.

Accession numbers and PatientIDs are used in memory only: they are never written, logged
or put in a message. Findings name rows of the labels file by line number and studies by
Study Instance UID.

Example:
    >>> df, report = build_manifest("export", "labels.csv", out="manifest.csv",
    ...                             secret_file="~/.triage/patient-key")  # doctest: +SKIP
    >>> print("\\n".join(report.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from triage.data.labels import LabelSpec, LabelTable, read_labels
from triage.data.manifest import read_manifest, write_manifest
from triage.data.pseudonym import DEFAULT_SECRET_FILE, load_or_create_secret, patient_key
from triage.data.splitting import (
    DEFAULT_SPLITS,
    SplitFractions,
    assign_splits,
    patient_strata,
)
from triage.dicom.device import UNKNOWN_DEVICE
from triage.dicom.scan.grouping import StudyGroup, group_studies, study_identifiers
from triage.dicom.scan.scan import scan_export
from triage.dicom.select.selection import SelectionRules, select_series
from triage.errors import LabelsError

log = logging.getLogger(__name__)

EXAMPLES = 3  # examples shown per finding in the text report


class Finding(StrEnum):
    """Findings of a build about studies (row problems of the labels file are
    `triage.data.labels.IssueKind` values)."""

    STUDY_WITHOUT_LABEL = "study-without-label"
    LABEL_WITHOUT_STUDY = "label-without-study"
    STUDY_WITHOUT_KEY = "study-without-key"
    SHARED_KEY = "shared-key"
    NO_PATIENT_ID = "no-patient-id"
    NO_SELECTABLE_SERIES = "no-selectable-series"
    UNREADABLE_FILES = "unreadable-files"
    LABEL_DIFFERS = "label-differs-from-manifest"


@dataclass
class BuildReport:
    """What a build did and what it found, free of identifiers.

    Attributes:
        export: the export folder.
        labels: the labels file.
        out: the manifest written (None when not written).
        studies_in_export: real studies found (pseudo-studies of unreadable files excluded).
        studies_new: studies appended.
        studies_kept: rows of the existing manifest kept as they were.
        label_rows: data rows of the labels file.
        secret_created: the patient-key secret file was made by this build.
        findings: kind -> one sentence per occurrence, each naming a labels-file line or a
            Study UID.
    """

    export: Path
    labels: Path
    out: Path | None = None
    studies_in_export: int = 0
    studies_new: int = 0
    studies_kept: int = 0
    label_rows: int = 0
    secret_created: bool = False
    findings: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, message: str) -> None:
        self.findings.setdefault(str(kind), []).append(message)

    def count(self, kind: str) -> int:
        """Occurrences of finding `kind`."""
        return len(self.findings.get(str(kind), []))

    def lines(self, examples: int = EXAMPLES) -> list[str]:
        """One line per kind of finding with its count, then its first `examples`."""
        out = []
        for kind, messages in sorted(self.findings.items()):
            out.append(f"{kind}: {len(messages)}")
            out.extend(f"  {m}" for m in messages[:examples])
            if len(messages) > examples:
                out.append(f"  ... and {len(messages) - examples} more")
        return out

    def to_dict(self, examples: int = 5) -> dict[str, Any]:
        """JSON-ready: counts and, per finding, its count and first `examples`."""
        return {
            "export": str(self.export), "labels": str(self.labels),
            "manifest": str(self.out) if self.out else None,
            "studies_in_export": self.studies_in_export, "studies_new": self.studies_new,
            "studies_kept": self.studies_kept, "label_rows": self.label_rows,
            "secret_created": self.secret_created,
            "findings": {kind: {"count": len(m), "examples": m[:examples]}
                         for kind, m in sorted(self.findings.items())},
        }


@dataclass(frozen=True)
class _Study:
    """What the build needs of one study; `key` and `patient_id` are identifiers."""

    study_uid: str
    key: str
    patient_id: str
    device_group: str
    selectable: bool


def build_manifest(
    export: Path | str,
    labels_csv: Path | str,
    *,
    out: Path | str | None = None,
    spec: LabelSpec | None = None,
    splits: SplitFractions | str = DEFAULT_SPLITS,
    seed: int = 0,
    secret_file: Path | str = DEFAULT_SECRET_FILE,
    selection: SelectionRules | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, BuildReport]:
    """Build (or extend) a manifest from `export` and `labels_csv`.

    Args:
        export: the PACS export folder.
        labels_csv: the labels file (`triage.data.labels`).
        out: where to write the manifest; a manifest already there is extended (its rows
            and splits never change). None: nothing is read or written.
        spec: how to read the labels file (key, columns, label values).
        splits: split fractions, ``"train=0.6,val=0.1,calib=0.15,test=0.15"`` or parsed.
        seed: orders patients within each stratum; equal inputs give equal manifests.
        secret_file: the patient-key secret; created (mode 0600) when missing.
        selection: series selection rules deciding whose scanner names the study's device
            group (those of the shipped ingest config when None).
        workers: header-reading processes of the scan (default: CPU count).

    Returns:
        The manifest (every column a string, valid by the schema) and the report.

    Raises:
        LabelsError: the labels file cannot be used, or no study matched any label.
        ManifestError: the manifest at `out` exists but is invalid.
        ConfigError: bad splits or an unusable secret file.
        DicomError: `export` is not a folder.
    """
    export, labels_csv = Path(export), Path(labels_csv)
    fractions = splits if isinstance(splits, SplitFractions) else SplitFractions.parse(splits)
    spec = spec or LabelSpec()
    table = read_labels(labels_csv, spec)  # fail fast, before the scan
    secret_path = Path(secret_file).expanduser()
    secret, created = load_or_create_secret(secret_path)
    if secret_path.resolve().is_relative_to(export.resolve()):
        log.warning("The patient-key secret %s is inside the export %s; move it out: whoever "
                    "gets the export and the secret can re-identify the manifest.",
                    secret_path, export)
    report = BuildReport(export, labels_csv, label_rows=table.rows, secret_created=created)
    for issue in table.issues:
        report.add(issue.kind, f"{labels_csv} {issue}")

    existing = _existing(out)
    studies = _scan(export, selection, workers, report)
    rows = _join(studies, table, spec, secret, existing, report)
    if not rows and existing.empty:
        raise LabelsError(labels_csv, f"no study of the export {export} matched a row: "
                                      f"{report.studies_in_export} studies, {len(table.entries)}"
                                      f" usable label rows joined by --key {spec.key.value} "
                                      f"(column '{table.key_column}'). Check --key and "
                                      "--key-column.")
    df = _assign(existing, rows, fractions, seed)
    report.studies_new, report.studies_kept = len(rows), len(existing)
    if out is not None:
        report.out = write_manifest(df, out)
    log.info("Manifest: %d studies (%d new, %d kept) of %d in the export; %d finding(s).",
             len(df), len(rows), len(existing), report.studies_in_export,
             sum(len(m) for m in report.findings.values()))
    return df, report


def _existing(out: Path | str | None) -> pd.DataFrame:
    if out is None or not Path(out).exists():
        return pd.DataFrame()
    df = read_manifest(out)
    return df.astype(str)


def _scan(export: Path, selection: SelectionRules | None, workers: int | None,
          report: BuildReport) -> list[_Study]:
    """Every real study of the export with its join key, PatientID and device group."""
    if selection is None:
        from triage.ingest.config import IngestConfig

        selection = IngestConfig.from_yaml().selection
    groups = group_studies(scan_export(export, workers=workers))
    studies = []
    for group in groups:
        if group.is_pseudo:
            report.add(Finding.UNREADABLE_FILES,
                       f"{group.study_uid.partition(':')[2]}: cannot be read, so its study is "
                       "unknown.")
            continue
        ids = study_identifiers(group)
        device, selectable = _device_group(group, selection)
        studies.append(_Study(group.study_uid, ids.accession_number.strip(),
                              ids.patient_id.strip(), device, selectable))
    report.studies_in_export = len(studies)
    return studies


def _device_group(group: StudyGroup, rules: SelectionRules) -> tuple[str, bool]:
    """The chosen series' group, as ingest reports it; without one, the group most readable
    files have (ties: the first in sorted order)."""
    chosen = select_series(group, rules).chosen
    if chosen is not None:
        return chosen.device_group, True
    counts = Counter(r.device_group for rs in group.series.values() for r in rs if r.ok)
    return (min(counts, key=lambda d: (-counts[d], d)) if counts else UNKNOWN_DEVICE), False


def _join(studies: list[_Study], table: LabelTable, spec: LabelSpec, secret: bytes,
          existing: pd.DataFrame, report: BuildReport) -> list[dict[str, str]]:
    """New manifest rows (no split yet) for the labelled studies not in `existing`."""
    by_accession = spec.key.value == "accession"
    kept = dict(zip(existing.get("study_uid", []), existing.get("label", []), strict=True))
    key_of = {s.study_uid: (s.key if by_accession else s.study_uid) for s in studies}
    sharing = Counter(k for k in key_of.values() if k)
    matched: set[str] = set()
    rows = []
    for study in studies:
        key = key_of[study.study_uid]
        uid = study.study_uid
        if not key:
            report.add(Finding.STUDY_WITHOUT_KEY, f"study {uid}: has no accession number, so "
                                                  "no label can be joined; use --key study_uid.")
            continue
        entry = table.entries.get(key)
        if uid in kept:  # rows of the existing manifest stay as they are
            if entry is not None:
                matched.add(key)
                if kept[uid] != str(entry.label):
                    report.add(Finding.LABEL_DIFFERS, f"study {uid}: {table.path} line "
                                                      f"{entry.line} gives label {entry.label}"
                                                      f", the manifest {kept[uid]}; the "
                                                      "manifest is kept (edit it to change a "
                                                      "label).")
            continue
        if entry is None:
            if key not in table.rejected:
                report.add(Finding.STUDY_WITHOUT_LABEL, f"study {uid}: no row of "
                                                        f"{table.path} has its {spec.key.value}.")
            continue
        matched.add(key)
        if sharing[key] > 1:
            report.add(Finding.SHARED_KEY, f"study {uid}: shares its {spec.key.value} with "
                                           f"{sharing[key] - 1} other study(ies); line "
                                           f"{entry.line}'s label is used for each.")
        if not study.selectable:
            report.add(Finding.NO_SELECTABLE_SERIES, f"study {uid}: no series passes "
                                                     "selection; ingest will fail it.")
        pid = study.patient_id
        if not pid:
            report.add(Finding.NO_PATIENT_ID, f"study {uid}: has no PatientID; it is its own "
                                              "patient for the split.")
        rows.append({"study_uid": uid,
                     "patient_key": patient_key(secret, pid or f"study:{uid}"),
                     "label": str(entry.label),
                     "device_group": entry.device_group or study.device_group})
    for key, entry in sorted(table.entries.items(), key=lambda item: item[1].line):
        if key not in matched:
            report.add(Finding.LABEL_WITHOUT_STUDY, f"{table.path} line {entry.line}: no study "
                                                    f"of the export has its {spec.key.value}.")
    return sorted(rows, key=lambda r: r["study_uid"])


def _assign(existing: pd.DataFrame, rows: list[dict[str, str]], fractions: SplitFractions,
            seed: int) -> pd.DataFrame:
    """`existing` with `rows` appended, every new patient split, no old one moved."""
    new = pd.DataFrame(rows, columns=["study_uid", "patient_key", "label", "device_group"])
    fixed = dict(zip(existing.get("patient_key", []), existing.get("split", []), strict=True))
    both = pd.concat([existing, new], ignore_index=True) if not existing.empty else new
    patients = patient_strata(zip(both["patient_key"], both["device_group"],
                                  both["label"].astype(int), strict=True))
    split_of = assign_splits(patients, fractions, seed, fixed)
    new["split"] = [split_of[k].value for k in new["patient_key"]]
    out = pd.concat([existing, new], ignore_index=True) if not existing.empty else new
    return out.fillna("").astype(str).reset_index(drop=True)
