"""The instance index: `InstanceRecord` (one per file), `ScanResult` and header-value parsing.

Identifiers: ``patient_id``, ``accession_number`` and ``study_date`` (`IDENTIFIER_FIELDS`)
are kept because the worklist needs them. They must never appear in a log line, an
exception message or any report other than the worklist itself.

Numeric header values are parsed from the raw bytes, not through pydicom's converters:
pydicom (``reading_validation_mode`` WARN, the default) silently returns an over-long DS
such as ``'-125.000000000000000000'`` as a float but a junk one such as ``'abc'`` as a
*string*, and under RAISE both raise. Here every value that is a number is read as one
(as dcm2niix does), anything else becomes None, and each repair is noted in ``malformed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from triage.dicom.device import UNKNOWN_DEVICE

if TYPE_CHECKING:
    import pandas as pd

IDENTIFIER_FIELDS = ("patient_id", "accession_number", "study_date")
"""Record fields that identify a patient or a visit: never log them."""

_DS_CHARACTERS = frozenset("0123456789+-eE. ")


class ScanErrorCode(StrEnum):
    """Why a file or folder could not be indexed; the value is what reports show."""

    ZERO_LENGTH = "zero-length"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    MISSING_UID = "missing-uid"
    PERMISSION_DENIED = "permission-denied"
    IO_ERROR = "io-error"
    UNREADABLE_DIRECTORY = "unreadable-directory"
    SYMLINK_LOOP = "symlink-loop"
    BROKEN_SYMLINK = "broken-symlink"
    MISSING_FILE = "missing-file"


class IgnoreReason(StrEnum):
    """Why a path was passed over without being an error."""

    NOT_DICOM = "not-dicom"
    DUPLICATE = "duplicate"
    SPECIAL_FILE = "special-file"


@dataclass(frozen=True)
class InstanceRecord:
    """What the scan learned about one file (or one unreadable folder) of an export.

    A record with ``error`` set keeps whatever could be read before the problem: a file
    truncated in its pixel data still names its study and series.

    Attributes:
        path: the file as the walk found it (symlinks not resolved).
        file_size: bytes; None for folders and for files missing on disk.
        error: a message that starts with the problem, e.g. ``"zero-length file"`` or
            ``"truncated: pixel data needs 2048 bytes but only 1548 remain"``; None when
            the header was read.
        error_code: the kind of ``error``.
        image_position: ImagePositionPatient in LPS mm; for enhanced multi-frame files the
            first frame's (from the functional groups).
        image_orientation: ImageOrientationPatient: row, then column direction cosines.
        pixel_spacing: PixelSpacing: (row spacing, column spacing) in mm.
        has_pixel_data: (7FE0,0010), (7FE0,0008) or (7FE0,0009) is present.
        malformed: one note per tag whose value broke its VR, e.g.
            ``"ImagePositionPatient: DS value longer than 16 characters ('-125.0000...')"``.
        patient_id: identifier, see `IDENTIFIER_FIELDS`.
        accession_number: identifier, see `IDENTIFIER_FIELDS`.
        study_date: identifier, see `IDENTIFIER_FIELDS`.
    """

    path: Path
    file_size: int | None = None
    error: str | None = None
    error_code: ScanErrorCode | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    station_name: str | None = None
    device_group: str = UNKNOWN_DEVICE
    image_type: tuple[str, ...] = ()
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    image_position: tuple[float, ...] | None = None
    image_orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    slice_thickness: float | None = None
    instance_number: int | None = None
    acquisition_number: int | None = None
    transfer_syntax: str | None = None
    has_pixel_data: bool = False
    series_description: str | None = None
    body_part: str | None = None
    series_number: int | None = None
    malformed: tuple[str, ...] = ()
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = None

    @property
    def ok(self) -> bool:
        """True when the header was read without error."""
        return self.error is None

    @property
    def frames(self) -> int:
        """Slices this instance holds: NumberOfFrames when positive, else 1."""
        return self.number_of_frames if self.number_of_frames and self.number_of_frames > 0 else 1


INDEX_COLUMNS = tuple(f.name for f in fields(InstanceRecord))
"""Columns of `ScanResult.to_frame`, in order."""


@dataclass(frozen=True)
class IgnoredPath:
    """A path the scan passed over on purpose (not an error)."""

    path: Path
    reason: IgnoreReason
    detail: str = ""


@dataclass(frozen=True)
class ScanResult:
    """Everything one scan of an export found, sorted by path.

    Attributes:
        root: the export folder that was scanned.
        records: one record per DICOM file, plus one per folder or file that could not be
            read and per DICOMDIR entry missing on disk.
        ignored: non-DICOM files, second paths to an already scanned file or folder, and
            special files (FIFOs, sockets, devices).
        dicomdirs: DICOMDIR files found (they are not instances).
        notes: scan-level remarks, e.g. a DICOMDIR that could not be read.
    """

    root: Path
    records: tuple[InstanceRecord, ...]
    ignored: tuple[IgnoredPath, ...] = ()
    dicomdirs: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[InstanceRecord, ...]:
        """Records that could not be read."""
        return tuple(r for r in self.records if r.error is not None)

    @property
    def non_dicom(self) -> tuple[Path, ...]:
        """Files ignored because they are not DICOM."""
        return tuple(i.path for i in self.ignored if i.reason is IgnoreReason.NOT_DICOM)

    def to_frame(self) -> pd.DataFrame:
        """The index as a DataFrame: one row per record, columns `INDEX_COLUMNS`.

        Paths and enums become strings; tuples stay tuples. The identifier columns
        (`IDENTIFIER_FIELDS`) are included: drop them before writing anything but the
        worklist.
        """
        import pandas as pd

        rows = []
        for record in self.records:
            row: dict[str, Any] = asdict(record)
            row["path"] = str(record.path)
            row["error_code"] = record.error_code.value if record.error_code else None
            rows.append(row)
        return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def relative_path(path: Path, root: Path) -> str:
    """`path` relative to `root` in POSIX form, or the whole path when outside `root`."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def failed_record(
    path: Path | str, code: ScanErrorCode, message: str, file_size: int | None = None,
    **values: Any,
) -> InstanceRecord:
    """A record for a file or folder that could not be indexed."""
    return InstanceRecord(Path(path), file_size, message, code, **values)


def raw_text(ds: Dataset, tag: int) -> str | None:
    """The element's value as text without conversion (ASCII VRs), stripped; None if empty."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Sequence):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip("\0 ")
    return text or None


def decoded_text(ds: Dataset, tag: int) -> str | None:
    """A text value decoded with the file's character set (LO, SH, PN...); None if empty."""
    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        if elem.value.isascii() and b"\x1b" not in elem.value:
            # Plain ASCII reads the same in every DICOM character set but ISO 2022 (ESC).
            return elem.value.decode("ascii").strip("\0 ") or None
    try:
        value = ds[tag].value if tag in ds else None
    except Exception:  # noqa: BLE001 - an undecodable or invalid string: fall back to bytes
        return raw_text(ds, tag)
    text = str(value).strip("\0 ") if value is not None else ""
    return text or None


def multi_text(ds: Dataset, tag: int) -> tuple[str, ...]:
    """A multi-valued code string (e.g. ImageType) as an upper-case tuple."""
    text = raw_text(ds, tag)
    return tuple(p.strip().upper() for p in text.split("\\")) if text else ()


def unsigned_short(ds: Dataset, tag: int) -> int | None:
    """A US value (Rows, Columns...) in the data set's byte order."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    if isinstance(elem, RawDataElement):
        if len(elem.value) < 2:
            return None
        little = elem.is_little_endian
        return int.from_bytes(elem.value[:2], "little" if little else "big")
    return int(elem.value)


def _show(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")


def decimals(
    ds: Dataset, tag: int, keyword: str, count: int, notes: list[str]
) -> tuple[float, ...] | None:
    """Parse a DS value of `count` numbers; junk gives None, every repair adds a note."""
    text = raw_text(ds, tag)
    if text is None:
        return None
    parts = [p.strip() for p in text.split("\\")]
    if len(parts) != count:
        notes.append(f"{keyword}: expected {count} value(s), got {len(parts)}")
        return None
    values = []
    for part in parts:
        if not part or not set(part) <= _DS_CHARACTERS:
            notes.append(f"{keyword}: not a number ({_show(part)})")
            return None
        try:
            value = float(part)
        except ValueError:
            notes.append(f"{keyword}: not a number ({_show(part)})")
            return None
        if not math.isfinite(value):
            notes.append(f"{keyword}: not finite ({_show(part)})")
            return None
        values.append(value)
    overlong = [p for p in parts if len(p) > 16]
    if overlong:
        notes.append(f"{keyword}: DS value longer than 16 characters ({_show(overlong[0])})")
    return tuple(values)


def integer(ds: Dataset, tag: int, keyword: str, notes: list[str]) -> int | None:
    """Parse a single IS value; a decimal with no fraction is accepted with a note."""
    text = raw_text(ds, tag)
    if text is None:
        return None
    text = text.split("\\")[0].strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text) if set(text) <= _DS_CHARACTERS else math.nan
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value == int(value):
        notes.append(f"{keyword}: IS value written as a decimal ({_show(text)})")
        return int(value)
    notes.append(f"{keyword}: not an integer ({_show(text)})")
    return None


@dataclass(frozen=True)
class Geometry:
    """Plane geometry of one image or frame, as parsed from the header."""

    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    spacing: tuple[float, ...] | None = None
    thickness: float | None = None


def plane_geometry(ds: Dataset, notes: list[str]) -> Geometry:
    """Geometry from the top-level tags, else from enhanced multi-frame functional groups.

    For enhanced objects the shared functional groups are read first, then the first
    frame's; the position is therefore the first frame's.
    """
    geometry = _geometry_from(ds, notes)
    if geometry.orientation is not None:
        return geometry
    for groups_tag in (0x52009229, 0x52009230):  # Shared, then PerFrame FunctionalGroups
        groups = ds.get(groups_tag)
        if groups is None or not groups.value:
            continue
        # PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence
        for macro_tag in (0x00209113, 0x00209116, 0x00289110):
            macro = groups.value[0].get(macro_tag)
            if macro is None or not macro.value:
                continue
            part = _geometry_from(macro.value[0], notes)
            geometry = Geometry(
                geometry.position or part.position,
                geometry.orientation or part.orientation,
                geometry.spacing or part.spacing,
                geometry.thickness if geometry.thickness is not None else part.thickness,
            )
    return geometry


def _geometry_from(ds: Dataset, notes: list[str]) -> Geometry:
    thickness = decimals(ds, 0x00180050, "SliceThickness", 1, notes)
    return Geometry(
        decimals(ds, 0x00200032, "ImagePositionPatient", 3, notes),
        decimals(ds, 0x00200037, "ImageOrientationPatient", 6, notes),
        decimals(ds, 0x00280030, "PixelSpacing", 2, notes),
        thickness[0] if thickness else None,
    )
