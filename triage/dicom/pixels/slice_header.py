"""Per-file and per-frame header values the loader needs, through the one value parser.

Values are read by `triage.dicom.values`, the parser the scan uses too, from whichever
reader holds the header: `RawValues` from the raw walk (`triage.dicom.fast_reader`) or a
pydicom `Dataset`. The scan keeps a note for a value it cannot read; the loader, which
must not guess a geometry, turns such a value of the slice's geometry or rescale into a
`GeometryError` with verdict ``malformed-values`` (`check_dropped`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage.dicom import tags
from triage.dicom.values import (
    Dropped,
    RawValues,
    decimals,
    decoded_text,
    frame_geometry,
    integer,
    multi_text,
    raw_text,
    unsigned_short,
)
from triage.dicom.verdict import GeometryVerdict
from triage.errors import GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Values the loader cannot do without when present: a note dropping one raises.
_PROVENANCE_ONLY = frozenset({"SliceThickness"})


def check_dropped(notes: list[str], path: Path) -> None:
    """Raise for the first value the parser dropped (present, but not a number).

    Raises:
        GeometryError: verdict ``malformed-values``, naming the keyword and the value.
    """
    for note in notes:
        if isinstance(note, Dropped) and note.keyword not in _PROVENANCE_ONLY:
            shown = note.text if len(note.text) <= 120 else note.text[:117] + "..."
            kind = "an integer" if note.keyword == "NumberOfFrames" else (
                f"{note.expected} decimal number(s)")
            raise GeometryError(
                f"{note.keyword} is {shown!r}, which is not {kind} ({note.split(': ', 1)[-1]})."
                " Fix or re-export the series; the loader will not guess a geometry.",
                path, verdict=GeometryVerdict.MALFORMED)


def decimal(ds: Dataset | RawValues, tag: int, keyword: str, path: Path, default: float
            ) -> float:
    """A single DS value, `default` when absent; a malformed one raises (`check_dropped`)."""
    notes: list[str] = []
    value = decimals(ds, tag, keyword, 1, notes)
    check_dropped(notes, path)
    return default if value is None else value[0]


@dataclass(frozen=True)
class ImageInfo:
    """File-level attributes of one image file (no patient identifiers).

    Attributes:
        path: the file.
        transfer_syntax: TransferSyntaxUID from the file meta information.
        sop_class_uid, sop_instance_uid, series_uid, study_uid: identifiers of the object.
        modality, manufacturer, model_name, patient_position: provenance.
        image_type: ImageType values, upper case.
        rows, columns, samples_per_pixel, photometric: image pixel description.
        bits_allocated, bits_stored, signed: how stored values are laid out.
        n_frames: NumberOfFrames (1 when absent).
        gantry_tilt: GantryDetectorTilt in degrees (0 when absent).
        slice_thickness: SliceThickness in mm, provenance only (None when absent).
        has_modality_lut: a Modality LUT Sequence replaces the rescale.
    """

    path: Path
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    modality: str
    manufacturer: str | None
    model_name: str | None
    patient_position: str | None
    image_type: tuple[str, ...]
    rows: int | None
    columns: int | None
    samples_per_pixel: int
    photometric: str | None
    bits_allocated: int | None
    bits_stored: int | None
    signed: bool
    n_frames: int
    gantry_tilt: float
    slice_thickness: float | None
    has_modality_lut: bool


def read_image_info(ds: Dataset | RawValues, path: Path, transfer_syntax: str) -> ImageInfo:
    """Collect the `ImageInfo` of one file from its top-level tags.

    Raises:
        GeometryError: NumberOfFrames or GantryDetectorTilt is present but malformed.
    """
    notes: list[str] = []
    bits_allocated = unsigned_short(ds, tags.BITS_ALLOCATED)
    thickness = decimals(ds, tags.SLICE_THICKNESS, "SliceThickness", 1, notes)  # provenance
    frames = integer(ds, tags.NUMBER_OF_FRAMES, "NumberOfFrames", notes)
    check_dropped(notes, path)
    return ImageInfo(
        path=path,
        transfer_syntax=transfer_syntax,
        sop_class_uid=raw_text(ds, tags.SOP_CLASS) or "",
        sop_instance_uid=raw_text(ds, tags.SOP_INSTANCE) or "",
        series_uid=raw_text(ds, tags.SERIES_UID) or "",
        study_uid=raw_text(ds, tags.STUDY_UID) or "",
        modality=raw_text(ds, tags.MODALITY) or "",
        manufacturer=decoded_text(ds, tags.MANUFACTURER),
        model_name=decoded_text(ds, tags.MODEL_NAME),
        patient_position=raw_text(ds, tags.PATIENT_POSITION),
        image_type=tuple(t for t in multi_text(ds, tags.IMAGE_TYPE) if t),
        rows=unsigned_short(ds, tags.ROWS),
        columns=unsigned_short(ds, tags.COLUMNS),
        samples_per_pixel=unsigned_short(ds, tags.SAMPLES_PER_PIXEL) or 1,
        photometric=raw_text(ds, tags.PHOTOMETRIC),
        bits_allocated=bits_allocated,
        bits_stored=unsigned_short(ds, tags.BITS_STORED) or bits_allocated,
        signed=unsigned_short(ds, tags.PIXEL_REPRESENTATION) == 1,
        n_frames=max(frames or 1, 1),
        gantry_tilt=decimal(ds, tags.GANTRY_TILT, "GantryDetectorTilt", path, 0.0),
        slice_thickness=None if thickness is None else thickness[0],
        has_modality_lut=tags.MODALITY_LUT_SEQUENCE in ds,
    )


@dataclass(frozen=True)
class FrameHeader:
    """Geometry and rescale of one 2D frame: a single-frame file or one frame of many.

    Attributes:
        file_index: index of the source file in the loader's file list.
        frame_index: frame number within that file (0 for single-frame files).
        position: ImagePositionPatient (LPS mm) or None when missing.
        orientation: ImageOrientationPatient (6 cosines) or None when missing.
        pixel_spacing: (row spacing, column spacing) in mm, or None when missing.
        slope, intercept: the rescale to modality units.
    """

    file_index: int
    frame_index: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float


def read_frame_header(ds: Dataset | RawValues, path: Path, file_index: int) -> FrameHeader:
    """The `FrameHeader` of a single-frame file from its top-level tags.

    Raises:
        GeometryError: a geometry or rescale value is present but malformed.
    """
    notes: list[str] = []
    geometry = frame_geometry(ds, notes)
    check_dropped(notes, path)
    return frame_header(file_index, 0, geometry.position, geometry.orientation,
                        geometry.spacing,
                        decimal(ds, tags.RESCALE_SLOPE, "RescaleSlope", path, 1.0),
                        decimal(ds, tags.RESCALE_INTERCEPT, "RescaleIntercept", path, 0.0))


def frame_header(file_index: int, frame_index: int, position: tuple[float, ...] | None,
                 orientation: tuple[float, ...] | None, spacing: tuple[float, ...] | None,
                 slope: float, intercept: float) -> FrameHeader:
    """A `FrameHeader` from parsed values (arrays for the geometry code)."""
    return FrameHeader(
        file_index=file_index,
        frame_index=frame_index,
        position=None if position is None else np.asarray(position, dtype=np.float64),
        orientation=None if orientation is None else np.asarray(orientation, dtype=np.float64),
        pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
        slope=slope,
        intercept=intercept,
    )
