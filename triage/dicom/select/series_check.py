"""Check one series against `SelectionRules`: a `SeriesRef` when it passes, else why not.

`evaluate_series` applies the rules in order (unreadable, modality, secondary capture, no
pixel data, localizer, image type, orientation, too few slices); the first rule a series
breaks is its `SeriesRejection`. A series that passes carries the notes the report shows
(stray orientations, localizer images, unreadable files, malformed values).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from triage.dicom.geometry import median_of
from triage.dicom.scan.index import InstanceRecord
from triage.dicom.select.selection_rules import SECONDARY_CAPTURE_CLASSES, Rejection, SelectionRules

MAX_DETAIL = 240
"""Most characters of a file's error that a rejection message quotes."""


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


def rejection(ref: SeriesRef | InstanceRecord, reason: Rejection, message: str
               ) -> SeriesRejection:
    """The rejection of the series `ref` (a passed series or one of its records)."""
    return SeriesRejection(ref.series_uid or "", reason, message, ref.series_number,
                           ref.series_description)


def error_counts(records: list[InstanceRecord] | tuple[InstanceRecord, ...]) -> str:
    """Unreadable records counted by error code, e.g. ``"corrupt: 1, truncated: 2"``."""
    counts = Counter(str(r.error_code) for r in records)
    return ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))


def first_error(records: list[InstanceRecord] | tuple[InstanceRecord, ...],
                limit: int = MAX_DETAIL) -> str:
    """The first unreadable record (by path) and its error, on one line, e.g.
    ``"/export/SE1/IM0001.dcm: truncated: pixel data needs 2048 bytes but only 1548 remain"``.

    The error is cut to `limit` characters, and its ``;`` become ``,``: a reason joins its
    parts with ``"; "``. Reports make the path relative to the export
    (`triage.ingest.report.inside_export`).
    """
    record = min(records, key=lambda r: str(r.path))
    detail = " ".join(str(record.error or record.error_code).split()).replace(";", ",")
    if len(detail) > limit:
        detail = detail[:limit - 1].rstrip() + "…"
    return f"{record.path}: {detail}"


def _most_common(values: list[str | None]) -> str | None:
    return Counter(values).most_common(1)[0][0] if values else None


def evaluate_series(study_uid: str, series_uid: str, records: tuple[InstanceRecord, ...],
                    rules: SelectionRules) -> SeriesRef | SeriesRejection:
    """Apply `rules` to the records of one series, in the documented order."""
    readable = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    first = readable[0] if readable else records[0]
    if not readable:
        return rejection(first, Rejection.UNREADABLE,
                          f"all {len(failed)} file(s) unreadable ({error_counts(failed)}), "
                          f"first {first_error(failed)}")
    modality = _most_common([r.modality for r in readable])
    if not rules.allows(modality):
        return rejection(first, Rejection.MODALITY, f"modality {modality or '(missing)'} not "
                          f"in allowed ({', '.join(rules.allowed_modalities)})")
    if all(r.sop_class_uid in SECONDARY_CAPTURE_CLASSES for r in readable):
        return rejection(first, Rejection.SECONDARY_CAPTURE, "secondary capture")
    images = [r for r in readable if r.has_pixel_data
              and r.sop_class_uid not in SECONDARY_CAPTURE_CLASSES]
    if not images:
        return rejection(first, Rejection.NO_PIXEL_DATA, "no pixel data")
    description = _most_common([r.series_description for r in images]) or ""
    scouts = [r for r in images if "LOCALIZER" in r.image_type]
    if rules.reject_localizers:
        match = re.search(rules.localizer_pattern, description, re.IGNORECASE)
        if match:
            return rejection(first, Rejection.LOCALIZER,
                              f"localizer (series description matches '{match.group(0)}')")
        if len(scouts) == len(images):
            return rejection(first, Rejection.LOCALIZER, "localizer (ImageType LOCALIZER)")
    # ImageType is Type 1, but some exports drop it; dcm2niix and SimpleITK load such
    # series, so an untyped image is not taken for a reformat (it gets a note instead).
    untyped = [r for r in images if not r.image_type]
    derived = [r for r in images
               if r.image_type and r.image_type[:2] != ("ORIGINAL", "PRIMARY")]
    if rules.require_original_primary and len(derived) == len(images):
        shown = "\\".join(derived[0].image_type) or "(missing)"
        return rejection(first, Rejection.IMAGE_TYPE,
                          f"image type {shown} is not ORIGINAL\\PRIMARY")
    groups, unoriented = _orientation_groups(images, rules.orientation_tolerance)
    dominant = groups[0] if groups else unoriented
    slices = _slice_count(dominant)
    if len(groups) > 1 and slices < rules.min_slices:
        return rejection(first, Rejection.ORIENTATION,
                          f"orientation inconsistent: {len(groups)} orientation groups, none "
                          f"with >= {rules.min_slices} slices")
    if slices < rules.min_slices:
        return rejection(first, Rejection.TOO_FEW_SLICES,
                          f"{slices} slices < min {rules.min_slices}")
    notes = _notes(groups, unoriented, dominant, scouts, derived, failed, records, images)
    if untyped:
        notes.append(f"{len(untyped)} image(s) without ImageType, taken as ORIGINAL\\PRIMARY; "
                     "check that the series is not a reformat")
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
                     f"({error_counts(failed)})")
    no_pixels = sum(1 for r in records if r.ok and not r.has_pixel_data)
    if no_pixels:
        notes.append(f"{no_pixels} instance(s) without pixel data")
    malformed = sorted({note.split(":")[0] for r in images for note in r.malformed})
    if malformed:
        count = sum(1 for r in images if r.malformed)
        notes.append(f"{count} file(s) with malformed values in {', '.join(malformed)}")
    return notes


def _slice_count(images: list[InstanceRecord]) -> int:
    """Frames of distinct SOP instances: a file exported twice is one slice, not two."""
    seen: dict[str, int] = {}
    anonymous = 0
    for record in images:
        if record.sop_instance_uid:
            seen[record.sop_instance_uid] = max(seen.get(record.sop_instance_uid, 0),
                                                record.frames)
        else:
            anonymous += record.frames
    return sum(seen.values()) + anonymous


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


def _median(values: list[float]) -> float:
    """`statistics.median` of `values` (not empty), without importing `statistics` (~9 ms)."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[half])
    return float((ordered[half - 1] + ordered[half]) / 2)


def _thickness(images: list[InstanceRecord]) -> float | None:
    """Median SliceThickness, else the median step between positions along the normal."""
    thicknesses = [r.slice_thickness for r in images if r.slice_thickness]
    if thicknesses:
        return _median(thicknesses)
    located = [r for r in images if r.image_position and r.image_orientation]
    if len(located) < 2:
        return None
    orientation = np.asarray(located[0].image_orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    heights = np.unique(np.round([np.dot(normal, r.image_position) for r in located], 3))
    steps = np.diff(heights)
    return median_of(steps) if steps.size else None
