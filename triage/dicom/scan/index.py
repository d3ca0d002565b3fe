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

import os
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.dicom.device import UNKNOWN_DEVICE

if TYPE_CHECKING:
    import pandas as pd

    from triage.dicom.fast_reader import WalkedHeader

IDENTIFIER_FIELDS = ("patient_id", "accession_number", "study_date")
"""Record fields that identify a patient or a visit: never log them."""


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
    OVER_LIMIT = "over-limit"


class IgnoreReason(StrEnum):
    """Why a path was passed over without being an error."""

    NOT_DICOM = "not-dicom"
    DUPLICATE = "duplicate"
    SPECIAL_FILE = "special-file"
    OUTSIDE_EXPORT = "outside-export"


@dataclass(frozen=True, slots=True)
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
        walked: for a file the loader's fast reader takes, what the scan's raw walk
            found that the loader would otherwise walk again (raw values, pixel data
            offset); handed to the loader with the record, never compared, not a column.
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
    walked: WalkedHeader | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when the header was read without error."""
        return self.error is None

    @property
    def frames(self) -> int:
        """Slices this instance holds: NumberOfFrames when positive, else 1."""
        return self.number_of_frames if self.number_of_frames and self.number_of_frames > 0 else 1


INDEX_COLUMNS = tuple(f.name for f in fields(InstanceRecord) if f.name != "walked")
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

    @property
    def links_outside_export(self) -> tuple[Path, ...]:
        """Symlinks not followed because their target lies outside the export."""
        return tuple(i.path for i in self.ignored if i.reason is IgnoreReason.OUTSIDE_EXPORT)

    def to_frame(self) -> pd.DataFrame:
        """The index as a DataFrame: one row per record, columns `INDEX_COLUMNS`.

        Paths and enums become strings; tuples stay tuples. The identifier columns
        (`IDENTIFIER_FIELDS`) are included: drop them before writing anything but the
        worklist.
        """
        import pandas as pd

        rows = []
        for record in self.records:
            row: dict[str, Any] = {name: getattr(record, name) for name in INDEX_COLUMNS}
            row["path"] = str(record.path)
            row["error_code"] = record.error_code.value if record.error_code else None
            rows.append(row)
        return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def relative_path(path: Path, root: Path) -> str:
    """`path` relative to `root` in POSIX form, or the whole path when outside `root`.

    Bytes of a name that are not UTF-8 (a Latin-1 folder name on disk, which Python holds
    as lone surrogates) are written as ``\\xNN`` escapes, so that the text can be written
    to any UTF-8 file or log and read back unchanged.
    """
    text = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
    return printable(text)


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a file name (lone surrogates) as ``\\xNN``."""
    if text.isascii():
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def failed_record(
    path: Path | str, code: ScanErrorCode, message: str, file_size: int | None = None,
    **values: Any,
) -> InstanceRecord:
    """A record for a file or folder that could not be indexed."""
    return InstanceRecord(Path(path), file_size, message, code, **values)


