"""Group the instance index into studies and series.

Every study found appears exactly once in the output of `group_studies`, and files that
cannot even be parsed are reported too: a failed file whose Study Instance UID could not be
read becomes its own pseudo-study ``unreadable:<path relative to the export>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.dicom.index import InstanceRecord, ScanResult, relative_path

UNREADABLE_PREFIX = "unreadable:"


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
    """

    study_uid: str
    series: dict[str, tuple[InstanceRecord, ...]]
    errors: tuple[InstanceRecord, ...] = ()
    device_groups: tuple[str, ...] = ()

    @property
    def is_pseudo(self) -> bool:
        """True for the pseudo-study of a file whose study is unknown."""
        return self.study_uid.startswith(UNREADABLE_PREFIX)

    @property
    def file_count(self) -> int:
        """Records in the study, readable or not."""
        in_series = sum(len(r) for r in self.series.values())
        return in_series + sum(1 for e in self.errors if e.series_uid is None)


def group_studies(scan: ScanResult) -> list[StudyGroup]:
    """Group records by study, then series: real studies by UID, then pseudo-studies."""
    by_study: dict[str, list[InstanceRecord]] = {}
    for record in scan.records:
        key = record.study_uid or UNREADABLE_PREFIX + relative_path(record.path, scan.root)
        by_study.setdefault(key, []).append(record)
    groups = []
    for key, records in by_study.items():
        series: dict[str, list[InstanceRecord]] = {}
        for record in records:
            if record.series_uid:
                series.setdefault(record.series_uid, []).append(record)
        groups.append(StudyGroup(
            study_uid=key,
            series={uid: tuple(rs) for uid, rs in sorted(series.items())},
            errors=tuple(r for r in records if not r.ok),
            device_groups=tuple(sorted({r.device_group for r in records if r.ok})),
        ))
    return sorted(groups, key=lambda g: (g.is_pseudo, g.study_uid))
