"""Group the instance index into studies and series.

Every study found appears exactly once in the output of `group_studies`, and files that
cannot even be parsed are reported too: a failed file whose Study Instance UID could not be
read becomes its own pseudo-study ``unreadable:<path relative to the export>``.

Files of one Study Instance UID whose PatientIDs disagree (two patients given one study UID
by a misconfigured modality or a merge gone wrong) are never merged: each patient's files
become their own group ``<study UID>#patient-<k>`` (k by first path), carrying a
`StudyGroup.conflict` reason, and selection fails every part, so that each patient's
images are reported and reviewed and none is classified beside another patient's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from triage.dicom.device import UNKNOWN_DEVICE
from triage.dicom.scan.index import InstanceRecord, ScanResult, relative_path

UNREADABLE_PREFIX = "unreadable:"
PATIENT_PART = "#patient-"


@dataclass(frozen=True)
class StudyGroup:
    """One study of the export: its series, its unreadable files and its device groups.

    Attributes:
        study_uid: the Study Instance UID, or ``unreadable:<relative path>`` for a file
            whose study could not be read (a pseudo-study of that one file).
        series: Series Instance UID -> its records (unreadable ones included), by path;
            a plain dict so that groups pickle, not to be mutated.
        errors: every record of the study with an error, by path.
        device_groups: device groups of the readable files, sorted.
        conflict: why this group is only part of its study (files of one Study Instance
            UID that disagree on PatientID), free of identifiers; None when whole.
    """

    study_uid: str
    series: dict[str, tuple[InstanceRecord, ...]]
    errors: tuple[InstanceRecord, ...] = ()
    device_groups: tuple[str, ...] = ()
    conflict: str | None = None

    @property
    def is_pseudo(self) -> bool:
        """True for the pseudo-study of a file whose study is unknown."""
        return self.study_uid.startswith(UNREADABLE_PREFIX)

    @property
    def modality(self) -> str:
        """The Modality most readable files carry (ties: the smallest), "" when none does;
        for report rows of studies whose series was not chosen."""
        counts = Counter(r.modality.strip().upper() for records in self.series.values()
                         for r in records if r.ok and r.modality and r.modality.strip())
        return min(counts, key=lambda m: (-counts[m], m)) if counts else ""

    @property
    def device_group(self) -> str:
        """The device groups of the readable files, comma-separated; ``unknown`` when none
        (a pseudo-study), the one spelling reports and summaries use."""
        return ",".join(self.device_groups) or UNKNOWN_DEVICE

    @property
    def file_count(self) -> int:
        """Records in the study, readable or not."""
        in_series = sum(len(r) for r in self.series.values())
        return in_series + sum(1 for e in self.errors if e.series_uid is None)


def group_studies(scan: ScanResult) -> list[StudyGroup]:
    """Group records by study, then series: real studies by UID, then pseudo-studies.

    A study whose readable files disagree on PatientID is split into one group per
    patient (see the module docstring); every record is in exactly one group.
    """
    by_study: dict[str, list[InstanceRecord]] = {}
    for record in scan.records:
        key = record.study_uid or UNREADABLE_PREFIX + relative_path(record.path, scan.root)
        by_study.setdefault(key, []).append(record)
    groups = []
    for key, records in by_study.items():
        parts = _patient_parts(records)
        if len(parts) == 1:
            groups.append(_group(key, records))
            continue
        for k, part in enumerate(parts, 1):
            conflict = (
                f"instances of this study disagree on PatientID: {len(parts)} patients share "
                f"Study Instance UID {key}; this is the files of patient {k} of {len(parts)} "
                f"({len(part)} of {len(records)} files), reported apart and not processed. "
                "Correct the export (one Study Instance UID per patient) and ingest again")
            groups.append(_group(f"{key}{PATIENT_PART}{k}", part, conflict))
    return sorted(groups, key=lambda g: (g.is_pseudo, g.study_uid))


def _patient_parts(records: list[InstanceRecord]) -> list[list[InstanceRecord]]:
    """The records of one study by PatientID, in order of first path; unreadable files
    (no PatientID) go with the first part. One part when the readable files agree."""
    by_patient: dict[str, list[InstanceRecord]] = {}
    for record in sorted((r for r in records if r.ok), key=lambda r: str(r.path)):
        by_patient.setdefault((record.patient_id or "").strip(), []).append(record)
    if len(by_patient) <= 1:
        return [records]
    parts = list(by_patient.values())
    parts[0] = parts[0] + [r for r in records if not r.ok]
    return parts


def _group(key: str, records: list[InstanceRecord], conflict: str | None = None
           ) -> StudyGroup:
    series: dict[str, list[InstanceRecord]] = {}
    for record in records:
        if record.series_uid:
            series.setdefault(record.series_uid, []).append(record)
    return StudyGroup(
        study_uid=key,
        series={uid: tuple(rs) for uid, rs in sorted(series.items())},
        errors=tuple(r for r in records if not r.ok),
        device_groups=tuple(sorted({r.device_group for r in records if r.ok})),
        conflict=conflict,
    )


@dataclass(frozen=True)
class StudyIdentifiers:
    """The identifiers of one study, for the worklist only."""

    patient_id: str = ""
    accession_number: str = ""
    study_date: str = ""


def study_identifiers(study: StudyGroup) -> StudyIdentifiers:
    """Patient ID, accession number and study date of `study`, read from its file headers.

    Files of one study normally agree; where they do not, the value most files carry wins
    (ties: the smallest value, so that the choice does not depend on file order).
    Pseudo-studies of unreadable files have none.
    """
    records = [r for rs in study.series.values() for r in rs] + list(study.errors)

    def vote(field: str) -> str:
        counts = Counter(v.strip() for r in records if (v := getattr(r, field)) and v.strip())
        if not counts:
            return ""
        return min(counts, key=lambda v: (-counts[v], v))

    return StudyIdentifiers(vote("patient_id"), vote("accession_number"), vote("study_date"))
