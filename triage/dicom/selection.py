"""Pick the one series of a study to classify, and give every other series its reason.

`select_series` applies `SelectionRules` to each series of a study, in this order, and the
first rule a series breaks is its `Rejection`: unreadable, modality, secondary capture, no
pixel data, localizer, image type, orientation, too few slices. Of the series that pass,
the thinnest reconstruction wins, then the one with most slices, then the lowest series
number; the others are rejected as ``not-preferred``. docs/ingest.md lists the messages.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from triage.dicom.grouping import StudyGroup
from triage.dicom.index import InstanceRecord

SECONDARY_CAPTURE_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1.7" + suffix for suffix in ("", ".1", ".2", ".3", ".4")
)


class Rejection(StrEnum):
    """Why a series was not chosen; the value is the stable code reports carry."""

    UNREADABLE = "unreadable"
    MODALITY = "modality"
    SECONDARY_CAPTURE = "secondary-capture"
    NO_PIXEL_DATA = "no-pixel-data"
    LOCALIZER = "localizer"
    IMAGE_TYPE = "image-type"
    ORIENTATION = "orientation"
    TOO_FEW_SLICES = "too-few-slices"
    NOT_PREFERRED = "not-preferred"


class StudyStatus(StrEnum):
    """The ingest outcome of a study."""

    SELECTED = "selected"
    NO_SERIES = "no-selectable-series"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class SelectionRules:
    """Which series may be classified, and which one is preferred.

    Attributes:
        allowed_modalities: DICOM Modality values accepted (upper-cased).
        require_original_primary: ImageType must start ``ORIGINAL\\PRIMARY``; reformats,
            MIPs and other derived series are rejected.
        reject_localizers: reject series whose images are all ImageType LOCALIZER or whose
            SeriesDescription matches `localizer_pattern`.
        localizer_pattern: case-insensitive regular expression for scout descriptions.
        min_slices: fewest slices (frames, for multi-frame) in the dominant orientation.
        orientation_tolerance: largest difference between direction cosines of images that
            share an orientation.

    Raises:
        ValueError: on an empty modality list, `min_slices` < 1, a tolerance outside
            (0, 1) or a pattern that does not compile.

    Example:
        >>> SelectionRules(allowed_modalities=("ct", "mr"), min_slices=8).allowed_modalities
        ('CT', 'MR')
    """

    allowed_modalities: tuple[str, ...] = ("CT",)
    require_original_primary: bool = True
    reject_localizers: bool = True
    localizer_pattern: str = r"scout|topogram|locali[sz]er|surview|scanogram"
    min_slices: int = 16
    orientation_tolerance: float = 1e-3

    def __post_init__(self) -> None:
        modalities = self.allowed_modalities
        modalities = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        modalities = tuple(m.strip().upper() for m in modalities if m.strip())
        if not modalities:
            raise ValueError("SelectionRules.allowed_modalities must name at least one "
                             "modality, e.g. ('CT',).")
        object.__setattr__(self, "allowed_modalities", modalities)
        if not isinstance(self.min_slices, int) or self.min_slices < 1:
            raise ValueError(f"SelectionRules.min_slices must be an integer >= 1, got "
                             f"{self.min_slices!r}.")
        if not 0 < self.orientation_tolerance < 1:
            raise ValueError("SelectionRules.orientation_tolerance must be in (0, 1), got "
                             f"{self.orientation_tolerance!r}.")
        try:
            re.compile(self.localizer_pattern)
        except re.error as err:
            raise ValueError(f"SelectionRules.localizer_pattern {self.localizer_pattern!r} "
                             f"is not a regular expression: {err}.") from err


@dataclass(frozen=True)
class SeriesRef:
    """A series that passed selection: what the loader needs, and what to tell the report.

    Attributes:
        instances: readable records with pixel data, by path; the loader sets aside those
            outside the dominant orientation (verdict ``mixed-localizer``).
        slices: slices in the dominant orientation group.
        slice_thickness: SliceThickness (median), else spacing from positions; mm.
        orientation_groups: distinct orientations among the instances (1 when consistent).
        notes: warnings for the report, e.g. stray images or unreadable files.
    """

    study_uid: str
    series_uid: str
    instances: tuple[InstanceRecord, ...]
    modality: str | None
    series_number: int | None
    series_description: str | None
    device_group: str
    slices: int
    slice_thickness: float | None
    orientation_groups: int = 1
    notes: tuple[str, ...] = ()

    @property
    def mixed_orientation(self) -> bool:
        """Several orientations: one dominant group passes, the loader drops the rest."""
        return self.orientation_groups > 1

    @property
    def label(self) -> str:
        """Series number and UID, as messages show a series."""
        return _label(self.series_number, self.series_uid)

    def describe(self) -> str:
        """Thickness and slice count, e.g. ``"1 mm, 20 slices"``."""
        thickness = "unknown thickness" if self.slice_thickness is None else (
            f"{self.slice_thickness:g} mm")
        return f"{thickness}, {self.slices} slices"


@dataclass(frozen=True)
class SeriesRejection:
    """A series that was not chosen, with its code and a message for humans."""

    series_uid: str
    reason: Rejection
    message: str
    series_number: int | None = None
    series_description: str | None = None

    def __str__(self) -> str:
        return f"series {_label(self.series_number, self.series_uid)}: {self.message}"


def _label(number: int | None, uid: str) -> str:
    return f"{number} ({uid})" if number is not None else uid


@dataclass(frozen=True)
class SeriesSelection:
    """The outcome of selection for one study.

    Attributes:
        study_uid: as in `StudyGroup`.
        status: selected; unreadable (no file of the study could be read); or
            no-selectable-series.
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
    passed: list[SeriesRef] = []
    rejected: list[SeriesRejection] = []
    for uid, records in study.series.items():
        outcome = _evaluate(study.study_uid, uid, records, rules)
        (passed if isinstance(outcome, SeriesRef) else rejected).append(outcome)
    warnings = []
    loose = [e for e in study.errors if e.series_uid is None]
    if loose:
        warnings.append(f"{len(loose)} file(s) of this study outside any series could not be "
                        f"read ({_error_counts(loose)})")
    if not passed:
        why = "; ".join(str(r) for r in _by_number(rejected)) or "no readable series"
        readable = any(r.ok for records in study.series.values() for r in records)
        status = StudyStatus.NO_SERIES if readable else StudyStatus.UNREADABLE
        return SeriesSelection(study.study_uid, status, None, _by_number(rejected),
                               f"no series passes selection: {why}", tuple(warnings))
    chosen = min(passed, key=_preference)
    for other in passed:
        if other is not chosen:
            rejected.append(_rejection(
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


def _rejection(ref: SeriesRef | InstanceRecord, reason: Rejection, message: str
               ) -> SeriesRejection:
    return SeriesRejection(ref.series_uid or "", reason, message, ref.series_number,
                           ref.series_description)


def _error_counts(records: list[InstanceRecord] | tuple[InstanceRecord, ...]) -> str:
    counts = Counter(str(r.error_code) for r in records)
    return ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))


def _most_common(values: list[str | None]) -> str | None:
    return Counter(values).most_common(1)[0][0] if values else None


def _evaluate(study_uid: str, series_uid: str, records: tuple[InstanceRecord, ...],
              rules: SelectionRules) -> SeriesRef | SeriesRejection:
    readable = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    first = readable[0] if readable else records[0]
    if not readable:
        return _rejection(first, Rejection.UNREADABLE,
                          f"all {len(failed)} file(s) unreadable ({_error_counts(failed)})")
    modality = _most_common([r.modality for r in readable])
    if modality not in rules.allowed_modalities:
        return _rejection(first, Rejection.MODALITY, f"modality {modality or '(missing)'} not "
                          f"in allowed ({', '.join(rules.allowed_modalities)})")
    if all(r.sop_class_uid in SECONDARY_CAPTURE_CLASSES for r in readable):
        return _rejection(first, Rejection.SECONDARY_CAPTURE, "secondary capture")
    images = [r for r in readable if r.has_pixel_data
              and r.sop_class_uid not in SECONDARY_CAPTURE_CLASSES]
    if not images:
        return _rejection(first, Rejection.NO_PIXEL_DATA, "no pixel data")
    description = _most_common([r.series_description for r in images]) or ""
    scouts = [r for r in images if "LOCALIZER" in r.image_type]
    if rules.reject_localizers:
        match = re.search(rules.localizer_pattern, description, re.IGNORECASE)
        if match:
            return _rejection(first, Rejection.LOCALIZER,
                              f"localizer (series description matches '{match.group(0)}')")
        if len(scouts) == len(images):
            return _rejection(first, Rejection.LOCALIZER, "localizer (ImageType LOCALIZER)")
    derived = [r for r in images if r.image_type[:2] != ("ORIGINAL", "PRIMARY")]
    if rules.require_original_primary and len(derived) == len(images):
        shown = "\\".join(derived[0].image_type) or "(missing)"
        return _rejection(first, Rejection.IMAGE_TYPE,
                          f"image type {shown} is not ORIGINAL\\PRIMARY")
    groups, unoriented = _orientation_groups(images, rules.orientation_tolerance)
    dominant = groups[0] if groups else unoriented
    slices = sum(r.frames for r in dominant)
    if len(groups) > 1 and slices < rules.min_slices:
        return _rejection(first, Rejection.ORIENTATION,
                          f"orientation inconsistent: {len(groups)} orientation groups, none "
                          f"with >= {rules.min_slices} slices")
    if slices < rules.min_slices:
        return _rejection(first, Rejection.TOO_FEW_SLICES,
                          f"{slices} slices < min {rules.min_slices}")
    notes = _notes(groups, unoriented, dominant, scouts, derived, failed, records, images)
    return SeriesRef(
        study_uid=study_uid, series_uid=series_uid, instances=tuple(images),
        modality=modality, series_number=first.series_number,
        series_description=first.series_description, device_group=first.device_group,
        slices=slices, slice_thickness=_thickness(dominant),
        orientation_groups=max(len(groups), 1), notes=tuple(notes),
    )


def _notes(
    groups: list[list[InstanceRecord]],
    unoriented: list[InstanceRecord],
    dominant: list[InstanceRecord],
    scouts: list[InstanceRecord],
    derived: list[InstanceRecord],
    failed: list[InstanceRecord],
    records: tuple[InstanceRecord, ...],
    images: list[InstanceRecord],
) -> list[str]:
    """Warnings about a series that passed, for the report."""
    notes = []
    if len(groups) > 1:
        stray = sum(len(g) for g in groups[1:])
        notes.append(f"mixed orientation: {len(groups)} orientation groups; {stray} image(s) "
                     f"outside the dominant group of {len(dominant)} are set aside by the loader")
    if unoriented and groups:
        notes.append(f"{len(unoriented)} image(s) without ImageOrientationPatient")
    if not groups:
        notes.append("no image has ImageOrientationPatient")
    if scouts:
        notes.append(f"{len(scouts)} image(s) with ImageType LOCALIZER in the series")
    if derived:
        notes.append(f"{len(derived)} image(s) not ORIGINAL\\PRIMARY in the series")
    if failed:
        notes.append(f"{len(failed)} file(s) of the series could not be read "
                     f"({_error_counts(failed)})")
    no_pixels = sum(1 for r in records if r.ok and not r.has_pixel_data)
    if no_pixels:
        notes.append(f"{no_pixels} instance(s) without pixel data")
    malformed = sorted({note.split(":")[0] for r in images for note in r.malformed})
    if malformed:
        count = sum(1 for r in images if r.malformed)
        notes.append(f"{count} file(s) with malformed values in {', '.join(malformed)}")
    return notes


def _orientation_groups(images: list[InstanceRecord], tolerance: float
                        ) -> tuple[list[list[InstanceRecord]], list[InstanceRecord]]:
    """Images grouped by orientation (largest first, by slices), and those without one."""
    groups: list[tuple[np.ndarray, list[InstanceRecord]]] = []
    unoriented = []
    for record in images:
        if record.image_orientation is None:
            unoriented.append(record)
            continue
        cosines = np.asarray(record.image_orientation)
        for reference, members in groups:
            if np.max(np.abs(reference - cosines)) <= tolerance:
                members.append(record)
                break
        else:
            groups.append((cosines, [record]))
    ordered = sorted((m for _, m in groups), key=lambda m: -sum(r.frames for r in m))
    return ordered, unoriented


def _thickness(images: list[InstanceRecord]) -> float | None:
    """Median SliceThickness, else the median step between positions along the normal."""
    thicknesses = [r.slice_thickness for r in images if r.slice_thickness]
    if thicknesses:
        return float(statistics.median(thicknesses))
    located = [r for r in images if r.image_position and r.image_orientation]
    if len(located) < 2:
        return None
    orientation = np.asarray(located[0].image_orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    heights = np.unique(np.round([np.dot(normal, r.image_position) for r in located], 3))
    steps = np.diff(heights)
    return float(np.median(steps)) if steps.size else None
