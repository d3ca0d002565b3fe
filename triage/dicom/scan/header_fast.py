"""The scan's fast path: an `InstanceRecord` from a strict raw walk of a well-formed header.

`fast_record` handles the files an export mostly holds - single- or multi-frame images in
a little-endian syntax with plain ASCII text - about eight times faster than
``pydicom.dcmread(stop_before_pixels=True)``. It returns None, and `read_instance` reads
the file with pydicom instead, for every file it does not fully understand (see
`triage.dicom.raw_header`) and for every file with something to report (truncated,
corrupt, missing UIDs, a DICOMDIR), so that error messages come from one place. Text in
a character set other than ASCII, ESC sequences, enhanced multi-frame functional groups
and unknown Specific Character Set values also go to pydicom. Both paths build the record
with `triage.dicom.scan.record.record_from_dataset`: the record does not depend on the path
(the tests compare them file by file). For a file the loader's fast reader takes, the
record also carries what the walk found for the loader (`fast_reader.WalkedHeader`), so
that the loader does not walk the header a second time.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from triage.dicom import tags
from triage.dicom.fast_reader import walked_header
from triage.dicom.raw_header import NeedMoreBytes, RawHeader, Unsupported, walk_header
from triage.dicom.scan.index import InstanceRecord
from triage.dicom.scan.record import check_fragments, expected_native_length, record_from_dataset
from triage.dicom.values import RawValues

#: Bytes read first; a header that does not fit is read whole (rare).
HEAD_BYTES = 16 * 1024

#: Defined terms of Specific Character Set (PS3.3 C.12.1.1.2) that pydicom knows.
_CHARSETS = frozenset({
    "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144",
    "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 203", "ISO_IR 13",
    "ISO_IR 166", "ISO_IR 192", "GB18030", "GBK", "ISO 2022 IR 6", "ISO 2022 IR 100",
    "ISO 2022 IR 101", "ISO 2022 IR 109", "ISO 2022 IR 110", "ISO 2022 IR 144",
    "ISO 2022 IR 127", "ISO 2022 IR 126", "ISO 2022 IR 138", "ISO 2022 IR 148",
    "ISO 2022 IR 203", "ISO 2022 IR 13", "ISO 2022 IR 166", "ISO 2022 IR 87",
    "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58",
})


def fast_record(fh: BinaryIO, path: Path, size: int) -> InstanceRecord | None:
    """The record of the open file `fh`, or None when pydicom must read it.

    Args:
        fh: the file, open for binary reading at its start.
        path: its path, for the record.
        size: its size in bytes.
    """
    data = fh.read(min(size, HEAD_BYTES))
    try:
        try:
            header = walk_header(data, size, tags.WALKED_TAGS)
        except NeedMoreBytes:
            data += fh.read()
            header = walk_header(data, size, tags.WALKED_TAGS)
        record = _record(fh, path, size, header)
    except (Unsupported, NeedMoreBytes, struct.error, UnicodeDecodeError, ValueError,
            IndexError):
        return None
    return record


def _record(fh: BinaryIO, path: Path, size: int, header: RawHeader) -> InstanceRecord:
    values = header.values
    if any(tag in values for tag in tags.FUNCTIONAL_GROUPS):
        raise Unsupported  # enhanced multi-frame geometry: pydicom reads the sequences
    charset = values.get(tags.SPECIFIC_CHARACTER_SET)
    if charset and not all(term.strip(" ") in _CHARSETS
                           for term in charset.decode("ascii").strip(" \x00").split("\\")):
        raise Unsupported
    for tag in tags.TEXT_TAGS:
        text = values.get(tag)
        if text and (not text.isascii() or b"\x1b" in text):
            raise Unsupported
    raw = RawValues(values, header.meta)
    present = _pixel_data_present(fh, size, header, raw)
    record = record_from_dataset(path, size, raw, header.transfer_syntax, present,
                                 walked_header(header, size))
    if (record.sop_class_uid == tags.MEDIA_STORAGE_DIRECTORY or not record.study_uid
            or not record.series_uid or not record.sop_instance_uid):
        raise Unsupported  # a DICOMDIR or an error to report: the pydicom path does it
    return record


def _pixel_data_present(fh: BinaryIO, size: int, header: RawHeader, raw: RawValues) -> bool:
    """True when sound pixel data follows the header; Unsupported when it is not sound."""
    if header.pixel_tag is None:
        return False  # the walk ended exactly at the end of the file
    if header.explicit and header.pixel_vr not in tags.PIXEL_VRS:
        raise Unsupported
    if header.pixel_length == tags.UNDEFINED:
        if not header.encapsulated:
            raise Unsupported
        fh.seek(header.pixel_offset)
        if check_fragments(fh, size).error_code is not None:
            raise Unsupported
        return True
    if header.encapsulated or header.pixel_length > size - header.pixel_offset:
        raise Unsupported
    expected = expected_native_length(raw)
    if (expected is not None and header.pixel_length < expected
            and header.pixel_tag == tags.PIXEL_DATA):
        raise Unsupported
    return True
