"""Per-file and per-frame header values the loader needs, parsed robustly from raw bytes.

Decimal strings (DS) are parsed from the raw element bytes rather than through pydicom's
value conversion: over-long values such as ``-125.000000000000000000`` are invalid DICOM
(DS allows 16 characters) but unambiguous, and pydicom warns or raises on them depending
on ``config.settings.reading_validation_mode``. A value that really cannot be read as a
number raises `GeometryError` with verdict ``malformed-values``.

Both readers of a file - the fast reader and pydicom's `dcmread` - expose a
`TagSource`, so the parsing rules below are shared and the two paths agree by design.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from triage.dicom.volume import GeometryVerdict
from triage.errors import GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Tags the loader reads, by keyword. Top-level values only (functional groups are read
#: by `triage.dicom.multiframe`).
TAGS: dict[str, int] = {
    "ImageType": 0x00080008,
    "SOPClassUID": 0x00080016,
    "SOPInstanceUID": 0x00080018,
    "Modality": 0x00080060,
    "Manufacturer": 0x00080070,
    "ManufacturerModelName": 0x00081090,
    "SliceThickness": 0x00180050,
    "GantryDetectorTilt": 0x00181120,
    "PatientPosition": 0x00185100,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "InstanceNumber": 0x00200013,
    "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037,
    "SamplesPerPixel": 0x00280002,
    "PhotometricInterpretation": 0x00280004,
    "NumberOfFrames": 0x00280008,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "PixelSpacing": 0x00280030,
    "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101,
    "PixelRepresentation": 0x00280103,
    "RescaleIntercept": 0x00281052,
    "RescaleSlope": 0x00281053,
    "ModalityLUTSequence": 0x00283000,
}


class TagSource(Protocol):
    """Read access to one data set's values: text values as str, US values as int."""

    def text(self, tag: int) -> str | None:
        """The value as text (multi-values joined by backslash); None if absent/empty."""

    def ushort(self, tag: int) -> int | None:
        """An unsigned short (US) value; None if absent or empty."""

    def has(self, tag: int) -> bool:
        """True when the element is present."""


class RawTags:
    """`TagSource` over raw little-endian element bytes collected by the fast reader."""

    def __init__(self, values: Mapping[int, bytes]) -> None:
        self._values = values

    def text(self, tag: int) -> str | None:
        raw = self._values.get(tag)
        if not raw:
            return None
        text = raw.decode("latin-1").strip(" \x00")
        return text or None

    def ushort(self, tag: int) -> int | None:
        raw = self._values.get(tag)
        if raw is None or len(raw) < 2:
            return None
        return int.from_bytes(raw[:2], "little")

    def has(self, tag: int) -> bool:
        return tag in self._values


class DatasetTags:
    """`TagSource` over a pydicom `Dataset`, reading text values from the raw bytes."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def text(self, tag: int) -> str | None:
        from pydicom.dataelem import RawDataElement

        elem = self._ds.get_item(tag)
        if elem is None or elem.value is None:
            return None
        value = elem.value
        if isinstance(elem, RawDataElement) or isinstance(value, bytes | bytearray):
            text = bytes(value).decode("latin-1")
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list | tuple) or hasattr(value, "__iter__"):
            text = "\\".join(_original(v) for v in value)
        else:
            text = _original(value)
        text = text.strip(" \x00")
        return text or None

    def ushort(self, tag: int) -> int | None:
        if tag not in self._ds:
            return None
        try:  # pydicom converts on access and may raise on a corrupt value
            value = self._ds[tag].value
            if isinstance(value, bytes):  # an element read as UN
                return int.from_bytes(value[:2], "little") if len(value) >= 2 else None
            return int(value) if value not in (None, "") else None
        except Exception:
            return None

    def has(self, tag: int) -> bool:
        return tag in self._ds


def _original(value: object) -> str:
    """The text a converted DS/IS value came from, else its str()."""
    original = getattr(value, "original_string", None)
    return str(original) if original is not None else str(value)


def parse_decimals(
    source: TagSource, keyword: str, count: int, path: Path, *, tag: int | None = None
) -> np.ndarray | None:
    """Parse a DS value of exactly `count` numbers; None when the element is absent.

    Args:
        source: where to read.
        keyword: the DICOM keyword, used for the tag and in messages.
        count: the required value multiplicity.
        path: the file, named in errors.
        tag: the tag when `keyword` is not in `TAGS` (functional group members).

    Raises:
        GeometryError: verdict ``malformed-values`` when the text is not `count` finite
            decimal numbers.
    """
    text = source.text(tag if tag is not None else TAGS[keyword])
    if text is None:
        return None
    parts = [p.strip(" \x00") for p in text.split("\\")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise GeometryError(
            f"{keyword} is {shown!r}, which is not {count} decimal number(s). "
            "Fix or re-export the series; the loader will not guess a geometry.",
            path,
            verdict=GeometryVerdict.MALFORMED,
        )
    return np.asarray(values, dtype=np.float64)


def parse_decimal(
    source: TagSource, keyword: str, path: Path, default: float, *, tag: int | None = None
) -> float:
    """A single DS value, or `default` when absent (see `parse_decimals`)."""
    values = parse_decimals(source, keyword, 1, path, tag=tag)
    return default if values is None else float(values[0])


def parse_integer(source: TagSource, keyword: str, path: Path) -> int | None:
    """An IS value (e.g. NumberOfFrames); None when absent.

    Raises:
        GeometryError: verdict ``malformed-values`` when present but not an integer.
    """
    text = source.text(TAGS[keyword])
    if text is None:
        return None
    try:
        return int(text.split("\\")[0].strip())
    except ValueError:
        raise GeometryError(
            f"{keyword} is {text!r}, which is not an integer. Fix or re-export the file.",
            path, verdict=GeometryVerdict.MALFORMED) from None


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


def read_image_info(source: TagSource, path: Path, transfer_syntax: str) -> ImageInfo:
    """Collect the `ImageInfo` of one file from its top-level tags."""
    bits_allocated = source.ushort(TAGS["BitsAllocated"])
    try:  # provenance only: a bad value must not fail the load
        thickness = parse_decimals(source, "SliceThickness", 1, path)
    except GeometryError:
        thickness = None
    image_type = source.text(TAGS["ImageType"]) or ""
    return ImageInfo(
        path=path,
        transfer_syntax=transfer_syntax,
        sop_class_uid=source.text(TAGS["SOPClassUID"]) or "",
        sop_instance_uid=source.text(TAGS["SOPInstanceUID"]) or "",
        series_uid=source.text(TAGS["SeriesInstanceUID"]) or "",
        study_uid=source.text(TAGS["StudyInstanceUID"]) or "",
        modality=source.text(TAGS["Modality"]) or "",
        manufacturer=source.text(TAGS["Manufacturer"]),
        model_name=source.text(TAGS["ManufacturerModelName"]),
        patient_position=source.text(TAGS["PatientPosition"]),
        image_type=tuple(p.strip().upper() for p in image_type.split("\\") if p.strip()),
        rows=source.ushort(TAGS["Rows"]),
        columns=source.ushort(TAGS["Columns"]),
        samples_per_pixel=source.ushort(TAGS["SamplesPerPixel"]) or 1,
        photometric=source.text(TAGS["PhotometricInterpretation"]),
        bits_allocated=bits_allocated,
        bits_stored=source.ushort(TAGS["BitsStored"]) or bits_allocated,
        signed=source.ushort(TAGS["PixelRepresentation"]) == 1,
        n_frames=max(parse_integer(source, "NumberOfFrames", path) or 1, 1),
        gantry_tilt=parse_decimal(source, "GantryDetectorTilt", path, 0.0),
        slice_thickness=None if thickness is None else float(thickness[0]),
        has_modality_lut=source.has(TAGS["ModalityLUTSequence"]),
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


def read_frame_header(source: TagSource, path: Path, file_index: int) -> FrameHeader:
    """The `FrameHeader` of a single-frame file from its top-level tags."""
    spacing = parse_decimals(source, "PixelSpacing", 2, path)
    return FrameHeader(
        file_index=file_index,
        frame_index=0,
        position=parse_decimals(source, "ImagePositionPatient", 3, path),
        orientation=parse_decimals(source, "ImageOrientationPatient", 6, path),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        slope=parse_decimal(source, "RescaleSlope", path, 1.0),
        intercept=parse_decimal(source, "RescaleIntercept", path, 0.0),
    )
