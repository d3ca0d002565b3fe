"""Pick the one series of a study to classify, and give every other series its reason.

`select_series` applies `SelectionRules` to each series of a study, in this order, and the
first rule a series breaks is its `Rejection`: unreadable, modality, secondary capture, no
pixel data, localizer, image type, orientation, too few slices. Of the series that pass,
the thinnest reconstruction wins, then the one with most slices, then the lowest series
number; the others are rejected as ``not-preferred``. docs/ingest.md lists the messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from triage.dicom.scan.grouping import StudyGroup
from triage.dicom.select.selection_rules import SECONDARY_CAPTURE_CLASSES, Rejection, SelectionRules
from triage.dicom.select.series_check import (
    SeriesRef,
    SeriesRejection,
    error_counts,
    evaluate_series,
    rejection,
)

__all__ = ["SECONDARY_CAPTURE_CLASSES", "Rejection", "SelectionRules", "SeriesRef",
           "SeriesRejection", "SeriesSelection", "StudyStatus", "select_series"]


class StudyStatus(StrEnum):
    """The ingest outcome of a study."""

    SELECTED = "selected"
    NO_SERIES = "no-selectable-series"
    UNREADABLE = "unreadable"
    PATIENT_CONFLICT = "patient-conflict"


@dataclass(frozen=True)
class SeriesSelection:
    """The outcome of selection for one study.

    Attributes:
        study_uid: as in `StudyGroup`.
        status: selected; unreadable (no file of the study could be read);
            no-selectable-series; or patient-conflict (the group is one patient's part
            of a study UID that several patients share, never classified).
        chosen: the series to classify, or None.
        rejected: every other series with its reason, by series number.
        reason: why no series was chosen (None when one was), e.g.
            ``"no series passes selection: series 1 (...): localizer"``.
        warnings: study-level remarks (unreadable files, the chosen series' notes).
    """

    study_uid: str
    status: StudyStatus
    chosen: SeriesRef | None
    rejected: tuple[SeriesRejection, ...] = ()
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    def summary(self) -> dict[str, str | int | None]:
        """One report row, free of patient identifiers."""
        chosen = self.chosen
        return {
            "study_uid": self.study_uid,
            "status": self.status.value,
            "series_uid": chosen.series_uid if chosen else None,
            "series_number": chosen.series_number if chosen else None,
            "slices": chosen.slices if chosen else None,
            "device_group": chosen.device_group if chosen else None,
            "reason": self.reason,
            "warnings": "; ".join(self.warnings) or None,
            "rejected": "; ".join(str(r) for r in self.rejected) or None,
        }


def select_series(study: StudyGroup, rules: SelectionRules | None = None) -> SeriesSelection:
    """Choose the series of `study` to classify and give every other series its reason.

    Args:
        study: one group from `group_studies`.
        rules: the rules; the defaults of `SelectionRules` when None.

    Returns:
        The selection; ``chosen`` is None when nothing passes, with ``reason`` saying why.
    """
    rules = rules or SelectionRules()
    if study.is_pseudo:
        error = study.errors[0].error if study.errors else "unknown error"
        return SeriesSelection(study.study_uid, StudyStatus.UNREADABLE, None,
                               reason=f"could not be read: {error}")
    if study.conflict:  # never classify one patient's images beside another's
        return SeriesSelection(study.study_uid, StudyStatus.PATIENT_CONFLICT, None,
                               reason=study.conflict)
    passed: list[SeriesRef] = []
    rejected: list[SeriesRejection] = []
    for uid, records in study.series.items():
        outcome = evaluate_series(study.study_uid, uid, records, rules)
        (passed if isinstance(outcome, SeriesRef) else rejected).append(outcome)
    warnings = []
    loose = [e for e in study.errors if e.series_uid is None]
    if loose:
        warnings.append(f"{len(loose)} file(s) of this study outside any series could not be "
                        f"read ({error_counts(loose)})")
    if not passed:
        why = "; ".join(str(r) for r in _by_number(rejected)) or "no readable series"
        readable = any(r.ok for records in study.series.values() for r in records)
        status = StudyStatus.NO_SERIES if readable else StudyStatus.UNREADABLE
        return SeriesSelection(study.study_uid, status, None, _by_number(rejected),
                               f"no series passes selection: {why}", tuple(warnings))
    chosen = min(passed, key=_preference)
    for other in passed:
        if other is not chosen:
            rejected.append(rejection(
                other, Rejection.NOT_PREFERRED,
                f"not preferred: {other.describe()}; chosen series {chosen.label} has "
                f"{chosen.describe()}"))
    return SeriesSelection(study.study_uid, StudyStatus.SELECTED, chosen,
                           _by_number(rejected), None, (*warnings, *chosen.notes))


def _by_number(rejected: list[SeriesRejection]) -> tuple[SeriesRejection, ...]:
    return tuple(sorted(rejected, key=lambda r: (
        r.series_number if r.series_number is not None else math.inf, r.series_uid)))


def _preference(ref: SeriesRef) -> tuple[float, int, float, str]:
    thickness = ref.slice_thickness if ref.slice_thickness is not None else math.inf
    number = ref.series_number if ref.series_number is not None else math.inf
    return thickness, -ref.slices, number, ref.series_uid
