"""Build an `InstanceRecord` from one header's values, whichever reader read them.

The scan reads a header either with the strict raw walk (`triage.dicom.scan.header_fast`) or
with pydicom (`triage.dicom.scan.header`); both end here, so that every value is parsed by the
same rules (`triage.dicom.values`) and the record does not depend on the reader.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from triage.dicom import tags
from triage.dicom.device import device_group
from triage.dicom.limits import ResourceLimitError, ResourceLimits
from triage.dicom.scan.index import InstanceRecord, ScanErrorCode
from triage.dicom.values import (
    RawValues,
    decoded_text,
    integer,
    multi_text,
    plane_geometry,
    raw_text,
    shared,
    unsigned_short,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from triage.dicom.fast_reader import WalkedHeader

MEDIA_STORAGE_DIRECTORY = tags.MEDIA_STORAGE_DIRECTORY


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
        if tag == tags.SEQUENCE_END:
            return PixelCheck(True)
        if tag != tags.ITEM:
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
    rows, columns = unsigned_short(ds, tags.ROWS), unsigned_short(ds, tags.COLUMNS)
    bits = unsigned_short(ds, tags.BITS_ALLOCATED)
    if not rows or not columns or not bits:
        return None
    samples = unsigned_short(ds, tags.SAMPLES_PER_PIXEL) or 1
    frames = integer(ds, tags.NUMBER_OF_FRAMES, "NumberOfFrames", []) or 1
    pixels = rows * columns * frames * samples
    if (raw_text(ds, tags.PHOTOMETRIC) or "").startswith("YBR_FULL_422"):
        pixels = pixels * 2 // 3
    return (pixels * bits + 7) // 8


def over_limit(ds: Dataset | RawValues, limits: ResourceLimits) -> str | None:
    """Why the header's Rows, Columns and NumberOfFrames break `limits`, or None.

    The text is `ResourceLimits.check_instance`'s, without a path: the one the loader
    gives for the same header.
    """
    frames = integer(ds, tags.NUMBER_OF_FRAMES, "NumberOfFrames", [])
    try:
        limits.check_instance(unsigned_short(ds, tags.ROWS), unsigned_short(ds, tags.COLUMNS),
                              frames, Path())
    except ResourceLimitError as err:
        return err.reason
    return None


def record_from_dataset(
    path: Path, size: int, ds: Dataset | RawValues, syntax: str | None,
    has_pixel_data: bool, walked: WalkedHeader | None = None
) -> InstanceRecord:
    """Build the record from a header read with ``stop_before_pixels=True`` (or walked raw).

    `walked` is what a raw walk found for the loader (`InstanceRecord.walked`).
    """
    notes: list[str] = []
    geometry = plane_geometry(ds, notes)
    manufacturer = shared(decoded_text(ds, tags.MANUFACTURER))
    model_name = shared(decoded_text(ds, tags.MODEL_NAME))
    return InstanceRecord(
        path=path,
        file_size=size,
        sop_class_uid=shared(raw_text(ds, tags.SOP_CLASS)
                       or (raw_text(ds.file_meta, tags.MEDIA_STORAGE_SOP_CLASS)
                           if ds.file_meta is not None else None)),
        sop_instance_uid=raw_text(ds, tags.SOP_INSTANCE),
        study_uid=shared(raw_text(ds, tags.STUDY_UID)),
        series_uid=shared(raw_text(ds, tags.SERIES_UID)),
        frame_of_reference_uid=shared(raw_text(ds, tags.FRAME_OF_REFERENCE)),
        modality=shared(raw_text(ds, tags.MODALITY)),
        manufacturer=manufacturer,
        model_name=model_name,
        station_name=shared(decoded_text(ds, tags.STATION_NAME)),
        device_group=shared(device_group(manufacturer, model_name)),
        image_type=multi_text(ds, tags.IMAGE_TYPE),
        rows=unsigned_short(ds, tags.ROWS),
        columns=unsigned_short(ds, tags.COLUMNS),
        number_of_frames=integer(ds, tags.NUMBER_OF_FRAMES, "NumberOfFrames", notes),
        image_position=geometry.position,
        image_orientation=geometry.orientation,
        pixel_spacing=geometry.spacing,
        slice_thickness=geometry.thickness,
        instance_number=integer(ds, tags.INSTANCE_NUMBER, "InstanceNumber", notes),
        acquisition_number=integer(ds, tags.ACQUISITION_NUMBER, "AcquisitionNumber", notes),
        transfer_syntax=shared(str(syntax)) if syntax else None,
        has_pixel_data=has_pixel_data,
        series_description=shared(decoded_text(ds, tags.SERIES_DESCRIPTION)),
        body_part=shared(raw_text(ds, tags.BODY_PART)),
        series_number=integer(ds, tags.SERIES_NUMBER, "SeriesNumber", notes),
        malformed=tuple(dict.fromkeys(notes)),
        patient_id=shared(decoded_text(ds, tags.PATIENT_ID)),
        accession_number=shared(decoded_text(ds, tags.ACCESSION_NUMBER)),
        study_date=shared(raw_text(ds, tags.STUDY_DATE)),
        walked=walked,
    )
