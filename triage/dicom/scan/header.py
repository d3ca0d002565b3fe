"""Read one file's header into an `InstanceRecord`, without decoding pixels.

The common, well-formed file is read by the strict raw walk (`triage.dicom.scan.header_fast`);
everything that walk declines - and every file with a problem to report - is read here
with ``pydicom.dcmread(stop_before_pixels=True)`` and raw element access (no value
conversion through pydicom); the pixel data's element header is then checked against the
file size so that truncated files are caught without reading the pixels. Both paths build
the record with `triage.dicom.scan.record`. `read_instance` is pure and picklable: the scanner
runs it in worker processes. pydicom is imported only when a file needs it.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from triage.dicom import tags
from triage.dicom.limits import ResourceLimitError, ResourceLimits, check_deflated_file
from triage.dicom.pydicom_notes import capture_pydicom
from triage.dicom.scan.header_fast import fast_record
from triage.dicom.scan.index import InstanceRecord, ScanErrorCode, failed_record
from triage.dicom.scan.record import (
    MEDIA_STORAGE_DIRECTORY,
    PixelCheck,
    check_fragments,
    expected_native_length,
    over_limit,
    record_from_dataset,
)
from triage.dicom.values import raw_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

__all__ = ["MEDIA_STORAGE_DIRECTORY", "os_error_record", "read_instance",
           "record_from_dataset"]

_UNDEFINED = tags.UNDEFINED


def read_instance(path: Path | str, limits: ResourceLimits | None = None
                  ) -> InstanceRecord | None:
    """Read one file's header (never its pixels) into a record; the scan's per-file step.

    Pure and picklable: it never raises for a bad file, whose problem becomes the record's
    ``error``.

    Args:
        path: the file to read.
        limits: a deflated data set inflating to more than ``max_inflated_bytes`` is
            refused (``over-limit``) before pydicom inflates it, and native pixel data
            too short for a header that declares more than ``max_frame_pixels`` or
            ``max_frames`` is ``over-limit`` rather than ``corrupt``; default
            `ResourceLimits()`.

    Returns:
        The record, or None when the file is not DICOM (no ``DICM`` prefix and no data set
        that starts with group 0002 or 0008 and names a UID).

    Example:
        >>> read_instance(os.devnull).error
        'zero-length file'
    """
    if not isinstance(path, Path):  # records keep the scan's Path (not parsed again)
        path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as err:
        return os_error_record(path, err)
    if size == 0:
        return failed_record(path, ScanErrorCode.ZERO_LENGTH, "zero-length file", 0)
    try:
        # Unbuffered: the fast path reads the head in one call and seeks over pixel
        # items; pydicom's many small reads get a buffer of their own.
        with open(path, "rb", buffering=0) as raw:
            record = fast_record(raw, path, size)  # no pydicom: nothing to capture
            if record is not None:
                return record
            raw.seek(0)
            # pydicom warns (and logs) about odd values; those we use are noted in
            # `malformed`, and its texts may quote patient identifiers, so none may reach
            # a log or stderr.
            with capture_pydicom():
                return _read_open_file(io.BufferedReader(raw), path, size,
                                       limits or ResourceLimits())
    except ResourceLimitError as err:
        return failed_record(path, ScanErrorCode.OVER_LIMIT, f"over limit: {err.reason}",
                             size)
    except OSError as err:
        if err.errno is not None:
            return os_error_record(path, err, size)
        return _corrupt(path, err, size)  # pydicom raises a bare OSError on bad items
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on garbage bytes
        return _corrupt(path, err, size)


def _corrupt(path: Path, err: Exception, size: int) -> InstanceRecord:
    # pydicom's parse errors name tags, VRs and offsets, never values: safe to show.
    first_line = (str(err).splitlines() or [""])[0][:160]
    message = f"corrupt: {type(err).__name__}: {first_line}"
    return failed_record(path, ScanErrorCode.CORRUPT, message, size)


def os_error_record(path: Path, err: OSError, size: int | None = None) -> InstanceRecord:
    """A record naming the `OSError` met while reading `path`."""
    if isinstance(err, PermissionError):
        return failed_record(path, ScanErrorCode.PERMISSION_DENIED, "permission denied", size)
    if err.errno == errno.ELOOP:
        return failed_record(path, ScanErrorCode.SYMLINK_LOOP, "symlink loop", size)
    if isinstance(err, FileNotFoundError):
        return failed_record(path, ScanErrorCode.IO_ERROR, "cannot read: file vanished", size)
    return failed_record(path, ScanErrorCode.IO_ERROR, f"cannot read: {err.strerror}", size)


def _read_open_file(fh: BinaryIO, path: Path, size: int, limits: ResourceLimits
                    ) -> InstanceRecord | None:
    head = fh.read(132)
    has_prefix = head[128:132] == b"DICM"
    if not has_prefix and not (len(head) >= 8 and head[1] == 0 and head[0] in (2, 8)):
        return None
    import pydicom  # here, not at the top: the fast path and non-DICOM files need none
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    check_deflated_file(fh, limits.max_inflated_bytes, path)  # pydicom inflates without a cap
    ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
    if has_prefix and len(ds.file_meta) == 0:
        return failed_record(path, ScanErrorCode.CORRUPT,
                             "corrupt: no File Meta Information after the 'DICM' prefix", size)
    syntax = _transfer_syntax(ds)
    header_cut = _check_header_complete(ds)
    if syntax == DeflatedExplicitVRLittleEndian:
        fh.seek(0)  # the body was inflated in memory, so offsets mean nothing: read it all
        present = bool(tags.PIXEL_TAGS & set(pydicom.dcmread(fh, force=True).keys()))
        pixels = header_cut or PixelCheck(present)
    else:
        pixels = header_cut or _check_pixel_data(fh, ds, size, syntax, limits)
    record = record_from_dataset(path, size, ds, str(syntax) if syntax else None,
                                 pixels.present)
    if record.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        return record
    uids = {"StudyInstanceUID": record.study_uid, "SeriesInstanceUID": record.series_uid,
            "SOPInstanceUID": record.sop_instance_uid}
    if not any(uids.values()) and header_cut is None:
        if not has_prefix:
            return None
        return replace(record, error_code=ScanErrorCode.CORRUPT,
                       error="corrupt: no SOP Instance, study or series UID could be read")
    if pixels.error_code is not None:
        return replace(record, error_code=pixels.error_code, error=pixels.error)
    missing = [name for name, value in uids.items() if not value]
    if missing:
        return replace(record, error_code=ScanErrorCode.MISSING_UID,
                       error=f"missing {', '.join(missing)}")
    return record


def _transfer_syntax(ds: Dataset) -> UID | None:
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    text = raw_text(ds.file_meta, tags.TRANSFER_SYNTAX)
    if text:
        return UID(text)
    implicit, little = ds.original_encoding
    if implicit is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_header_complete(ds: Dataset) -> PixelCheck | None:
    """pydicom reads a value cut by the end of the file without complaint: compare lengths.

    Only the last element read (of the file meta, then of the data set) can be cut short.
    """
    from pydicom.dataelem import RawDataElement

    for part in (ds.file_meta, ds):
        elem = _last_element(part)
        if (isinstance(elem, RawDataElement) and elem.value is not None
                and elem.length != _UNDEFINED and len(elem.value) < elem.length):
            return PixelCheck(False, ScanErrorCode.TRUNCATED,
                              f"truncated: header element {elem.tag} needs {elem.length} "
                              f"bytes but only {len(elem.value)} remain")
    return None


def _last_element(ds: Dataset) -> object | None:
    """The element read last (``Dataset.items()`` keeps reading order, unconverted)."""
    items = list(ds.items())
    return items[-1][1] if items else None


def _check_pixel_data(fh: BinaryIO, ds: Dataset, size: int, syntax: UID | None,
                      limits: ResourceLimits) -> PixelCheck:
    """Read the pixel data element's header (where dcmread stopped) and check its length.

    Native pixel data shorter than the header's Rows x Columns x frames needs is
    ``over-limit`` when that size breaks a cap of `limits` (the loader refuses such a
    header before decoding, as it does for compressed data), else ``corrupt``.
    """
    little = ds.original_encoding[1] is not False
    endian = "<" if little else ">"
    head = fh.read(8)
    if len(head) < 8:
        # pydicom stops silently on a partial element header, which it has consumed:
        # bytes left after the last parsed value mean the file was cut inside one.
        if len(head) or (_parsed_end(ds) or size) < size:
            return PixelCheck(False, ScanErrorCode.TRUNCATED,
                              "truncated: the file ends inside a data element header")
        return PixelCheck(False)
    group, element = struct.unpack(f"{endian}HH", head[:4])
    if (group << 16 | element) not in tags.PIXEL_TAGS:
        return PixelCheck(False)
    # pydicom reads an element without a VR in an explicit-VR file as implicit VR (with a
    # warning) when the two bytes after the tag are not upper-case letters: so do we.
    explicit = ds.original_encoding[0] is False and all(0x40 < b < 0x5B for b in head[4:6])
    if explicit and head[4:6] in tags.LONG_VRS:
        extra = fh.read(4)
        length = struct.unpack(f"{endian}L", extra)[0] if len(extra) == 4 else 0
    elif explicit:
        length = struct.unpack(f"{endian}H", head[6:8])[0]
    else:
        length = struct.unpack(f"{endian}L", head[4:8])[0]
    if length == _UNDEFINED:
        return check_fragments(fh, size)
    remaining = size - fh.tell()
    if length > remaining:
        return PixelCheck(True, ScanErrorCode.TRUNCATED,
                          f"truncated: pixel data needs {length} bytes but only {remaining} remain")
    native = syntax is not None and not syntax.is_encapsulated
    expected = expected_native_length(ds) if native else None
    if expected is not None and length < expected and group << 16 | element == tags.PIXEL_DATA:
        over = over_limit(ds, limits)
        if over is not None:
            return PixelCheck(True, ScanErrorCode.OVER_LIMIT, f"over limit: {over}")
        return PixelCheck(True, ScanErrorCode.CORRUPT,
                          f"corrupt: pixel data has {length} bytes but Rows, Columns, frames, "
                          f"samples and BitsAllocated need {expected}")
    return PixelCheck(True)


def _parsed_end(ds: Dataset) -> int | None:
    """File offset where the last element's value ends (None after a sequence)."""
    from pydicom.dataelem import RawDataElement

    elem = _last_element(ds)
    if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED:
        return None
    return elem.value_tell + elem.length


