"""Build an `InstanceRecord` from one header's values, whichever reader read them.

The scan reads a header either with the strict raw walk (`triage.dicom.header_fast`) or
with pydicom (`triage.dicom.header`); both end here, so that every value is parsed by the
same rules (`triage.dicom.values`) and the record does not depend on the reader.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from triage.dicom.device import device_group
from triage.dicom.index import InstanceRecord, ScanErrorCode
from triage.dicom.values import (
    RawValues,
    decoded_text,
    integer,
    multi_text,
    plane_geometry,
    raw_text,
    unsigned_short,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


@dataclass(frozen=True)
class PixelCheck:
    """Whether pixel data is present, and what is wrong with it if anything."""

    present: bool
    error_code: ScanErrorCode | None = None
    error: str | None = None


def check_fragments(fh: BinaryIO, size: int) -> PixelCheck:
    """Walk the encapsulated items (seeking over their bytes) up to the sequence delimiter."""
    count = 0
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return PixelCheck(True, ScanErrorCode.TRUNCATED,
                              f"truncated: encapsulated pixel data ends after {count} item(s) "
                              "without a sequence delimiter")
        group, element, length = struct.unpack("<HHL", head)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return PixelCheck(True)
        if tag != _ITEM:
            return PixelCheck(True, ScanErrorCode.CORRUPT,
                              f"corrupt: unexpected tag ({group:04X},{element:04X}) in "
                              "encapsulated pixel data")
        remaining = size - fh.tell()
        if length > remaining:
            return PixelCheck(True, ScanErrorCode.TRUNCATED,
                              f"truncated: pixel data item {count} needs {length} bytes but "
                              f"only {remaining} remain")
        fh.seek(length, os.SEEK_CUR)
        count += 1


def expected_native_length(ds: Dataset | RawValues) -> int | None:
    """Bytes that native pixel data needs by Rows, Columns, frames, samples and bits."""
    rows, columns = unsigned_short(ds, 0x00280010), unsigned_short(ds, 0x00280011)
    bits = unsigned_short(ds, 0x00280100)
    if not rows or not columns or not bits:
        return None
    samples = unsigned_short(ds, 0x00280002) or 1
    frames = integer(ds, 0x00280008, "NumberOfFrames", []) or 1
    pixels = rows * columns * frames * samples
    if (raw_text(ds, 0x00280004) or "").startswith("YBR_FULL_422"):
        pixels = pixels * 2 // 3
    return (pixels * bits + 7) // 8


def record_from_dataset(
    path: Path, size: int, ds: Dataset | RawValues, syntax: str | None,
    has_pixel_data: bool
) -> InstanceRecord:
    """Build the record from a header read with ``stop_before_pixels=True`` (or walked raw)."""
    notes: list[str] = []
    geometry = plane_geometry(ds, notes)
    manufacturer, model_name = decoded_text(ds, 0x00080070), decoded_text(ds, 0x00081090)
    return InstanceRecord(
        path=path,
        file_size=size,
        sop_class_uid=raw_text(ds, 0x00080016) or raw_text(ds.file_meta, 0x00020002),
        sop_instance_uid=raw_text(ds, 0x00080018),
        study_uid=raw_text(ds, 0x0020000D),
        series_uid=raw_text(ds, 0x0020000E),
        frame_of_reference_uid=raw_text(ds, 0x00200052),
        modality=raw_text(ds, 0x00080060),
        manufacturer=manufacturer,
        model_name=model_name,
        station_name=decoded_text(ds, 0x00081010),
        device_group=device_group(manufacturer, model_name),
        image_type=multi_text(ds, 0x00080008),
        rows=unsigned_short(ds, 0x00280010),
        columns=unsigned_short(ds, 0x00280011),
        number_of_frames=integer(ds, 0x00280008, "NumberOfFrames", notes),
        image_position=geometry.position,
        image_orientation=geometry.orientation,
        pixel_spacing=geometry.spacing,
        slice_thickness=geometry.thickness,
        instance_number=integer(ds, 0x00200013, "InstanceNumber", notes),
        acquisition_number=integer(ds, 0x00200012, "AcquisitionNumber", notes),
        transfer_syntax=str(syntax) if syntax else None,
        has_pixel_data=has_pixel_data,
        series_description=decoded_text(ds, 0x0008103E),
        body_part=raw_text(ds, 0x00180015),
        series_number=integer(ds, 0x00200011, "SeriesNumber", notes),
        malformed=tuple(dict.fromkeys(notes)),
        patient_id=decoded_text(ds, 0x00100020),
        accession_number=decoded_text(ds, 0x00080050),
        study_date=raw_text(ds, 0x00080020),
    )
