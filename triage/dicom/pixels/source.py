"""Read one file for the loader: its `ImageInfo`, its frames' headers, and its pixels.

Single-frame little-endian files (native or compressed) go through `fast_reader`;
everything else through `pydicom.dcmread` (once per file). Every failure becomes a
`DicomError` subclass that names the file: no pydicom or numpy exception leaks out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage.dicom.fast_reader import FastFile, WalkedHeader, read_fast
from triage.dicom.limits import ResourceLimitError, ResourceLimits, check_deflated_file
from triage.dicom.pixels import decode, multiframe
from triage.dicom.pixels.slice_header import (
    FrameHeader,
    ImageInfo,
    read_frame_header,
    read_image_info,
)
from triage.dicom.pydicom_notes import capture_pydicom
from triage.dicom.tags import SEGMENTATION_STORAGE
from triage.errors import DicomError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

LOGGER = logging.getLogger(__name__)
_GREYSCALE = {"MONOCHROME1", "MONOCHROME2"}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass
class SourceFile:
    """One read file.

    Attributes:
        info: file-level attributes.
        frames: one header per frame.
        fast: the fast reader's result, or None.
        dataset: the pydicom data set, or None when read by the fast reader.
        reader: which reader parsed the header ("fast" or "pydicom"), for provenance.
    """

    info: ImageInfo
    frames: list[FrameHeader]
    fast: FastFile | None = None
    dataset: Dataset | None = None
    reader: str = "pydicom"
    _stored: np.ndarray | None = field(default=None, repr=False)

    def pixel_bytes(self) -> bytes:
        """The raw PixelData value (for comparing copies of one instance)."""
        if self.fast is not None:
            start = self.fast.pixel_offset
            return self.fast.data[start:start + self.fast.pixel_length]
        assert self.dataset is not None
        return bytes(self.dataset.get("PixelData", b"") or b"")

    def stored(self) -> np.ndarray:
        """Stored pixel values, (frames, rows, columns); decoded once and cached.

        Raises:
            DicomError: decoding failed or the decoded shape disagrees with the header.
        """
        if self._stored is None:
            arr: np.ndarray | None
            if self.fast is not None and self.fast.encapsulated:
                arr = decode.encapsulated_stored(self.fast.data, self.fast.pixel_offset,
                                                 self.info)
            elif self.fast is not None:
                arr = decode.native_stored(self.fast.data, self.fast.pixel_offset,
                                           self.fast.pixel_length, self.info)
                if arr is None:  # outside the fast layout: let pydicom decode it
                    self.dataset = _dcmread(self.info.path)
                    self.fast = None
                    arr = decode.dataset_stored(self.dataset, self.info)
            else:
                assert self.dataset is not None
                arr = decode.dataset_stored(self.dataset, self.info)
            expected = (self.info.n_frames, self.info.rows, self.info.columns)
            if arr.shape != expected:
                raise DicomError(
                    f"Decoded pixel data has shape {arr.shape}, but the header describes "
                    f"{expected} (frames, Rows, Columns). The file is inconsistent.",
                    self.info.path)
            self._stored = arr
        return self._stored

    def adopt_stored(self, arr: np.ndarray) -> bool:
        """Use `arr`, decoded from this file by another process, as its stored values.

        Returns:
            False (and nothing changes) when `arr` does not have the shape the header
            describes; the file is then decoded here as usual.
        """
        if arr.shape != (self.info.n_frames, self.info.rows, self.info.columns):
            return False
        self._stored = arr
        return True

    def release(self) -> None:
        """Drop the pixel data and file bytes once they are copied into the volume."""
        self._stored = None
        self.fast = None
        self.dataset = None


def read_source(path: Path, index: int, *, fast: bool = True,
                limits: ResourceLimits | None = None,
                walked: WalkedHeader | None = None) -> SourceFile:
    """Read `path` (file number `index` of the series) and check that it is usable.

    Args:
        path: the file.
        index: its position in the series, recorded in its frame headers.
        fast: try the fast reader first.
        limits: caps checked before the data set is inflated or any pixel decoded
            (default: `ResourceLimits()`).
        walked: what the export scan's walk of this file found
            (`InstanceRecord.walked`), so that the fast reader need not walk it again.

    Raises:
        ResourceLimitError: the file inflates to, or declares, more than `limits` allow.
        DicomError: unreadable, not DICOM, no pixel data, colour, Modality LUT.
        UnsupportedTransferSyntaxError: no installed plugin decodes its pixel data.
        GeometryError: malformed or underivable frame geometry.
    """
    limits = limits or ResourceLimits()
    if fast:
        try:
            quick = read_fast(path, walked)
        except OSError as err:
            raise DicomError(f"The file cannot be read ({err.strerror or err}).", path) from err
        if quick is not None:
            info = read_image_info(quick.tags, path, quick.transfer_syntax)
            limits.check_instance(info.rows, info.columns, info.n_frames, path)
            if info.n_frames == 1:
                _check_image(info, has_pixels=True)
                decode.ensure_decodable(info.transfer_syntax, path)
                return SourceFile(info, [read_frame_header(quick.tags, path, index)],
                                  fast=quick, reader="fast")
    ds = _dcmread(path, limits.max_inflated_bytes)
    info = read_image_info(ds, path, _transfer_syntax(ds))
    limits.check_instance(info.rows, info.columns, info.n_frames, path)
    meta = getattr(ds, "file_meta", None)
    if not info.sop_class_uid and meta is not None:  # e.g. a DICOMDIR
        info = replace(info, sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")))
    _check_image(info, has_pixels=any(k in ds for k in _PIXEL_KEYWORDS))
    decode.ensure_decodable(info.transfer_syntax, path)
    try:
        frames = multiframe.frame_headers(ds, info, index)
    except DicomError:
        raise
    except Exception as err:  # pydicom converts sequences on access: corrupt items raise
        raise DicomError(
            f"The frame geometry could not be read ({type(err).__name__}: {err}); the "
            "file's functional groups or geometry elements are corrupt.", path) from err
    return SourceFile(info, frames, dataset=ds)


def _dcmread(path: Path, max_inflated_bytes: int | None = None) -> Dataset:
    """`dcmread` once, with every failure turned into a `DicomError` naming `path`.

    A deflated file is first inflated as a stream up to `max_inflated_bytes` (default:
    `ResourceLimits().max_inflated_bytes`): pydicom inflates it whole in memory.
    """
    import pydicom  # only for files the fast reader leaves to it

    limit = max_inflated_bytes or ResourceLimits().max_inflated_bytes
    try:
        with capture_pydicom() as notes:  # passed on to the caller's capture, if any
            with open(path, "rb") as fh:
                check_deflated_file(fh, limit, path)
                ds = pydicom.dcmread(fh, force=True)
    except ResourceLimitError:
        raise
    except OSError as err:
        raise DicomError(f"The file cannot be read ({err.strerror or err}).", path) from err
    except Exception as err:  # pydicom raises many types on corrupt input
        raise DicomError(
            f"The file is not readable as DICOM ({type(err).__name__}: {err}). Remove it "
            "from the series or re-export it.", path) from err
    if notes:  # counted, not quoted: pydicom's messages can quote element values (names)
        LOGGER.debug("pydicom warned %d time(s) while reading a file.", len(notes))
    if len(ds) == 0:
        detail = f" (pydicom: {notes[0]})" if notes else ""
        raise DicomError(
            f"The file holds no readable data set after its header{detail}; it is truncated, "
            "empty or not DICOM.", path)
    return ds


def _transfer_syntax(ds: Dataset) -> str:
    """The file's transfer syntax; for files without meta, the encoding pydicom detected."""
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return str(uid)
    implicit, little = ds.original_encoding
    if implicit is None:
        return str(ExplicitVRLittleEndian)
    guessed = (ImplicitVRLittleEndian if implicit else
               ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    # pydicom's decoders read the syntax from file_meta; record the detected one there.
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = UID(guessed)
    return str(guessed)


def _check_image(info: ImageInfo, *, has_pixels: bool) -> None:
    if info.sop_class_uid == SEGMENTATION_STORAGE:
        raise DicomError(
            "The file is a Segmentation (SEG): a label map with one frame per segment and "
            "slice, not an image. Load the image series it references instead.", info.path)
    if not has_pixels:
        from pydicom.uid import UID

        kind = UID(info.sop_class_uid).name if info.sop_class_uid else "unknown"
        raise DicomError(
            f"The file has no pixel data (SOP class {kind}, modality "
            f"{info.modality or 'unknown'}); it is not an image and cannot be part of a "
            "volume.", info.path)
    if not info.rows or not info.columns or not info.bits_allocated:
        raise DicomError(
            "The file lacks Rows, Columns or BitsAllocated, so its pixel data cannot be "
            "interpreted.", info.path)
    if (info.bits_stored or 0) > info.bits_allocated:
        raise DicomError(
            f"BitsStored ({info.bits_stored}) exceeds BitsAllocated ({info.bits_allocated}): "
            "the header contradicts itself, so the stored values cannot be interpreted.",
            info.path)
    if info.samples_per_pixel != 1 or (info.photometric or "MONOCHROME2") not in _GREYSCALE:
        raise DicomError(
            f"The image is {info.photometric or 'colour'} with {info.samples_per_pixel} "
            "sample(s) per pixel; only greyscale (MONOCHROME1/2) images make a volume.",
            info.path)
    if info.has_modality_lut:
        raise DicomError(
            "The image maps stored values through a Modality LUT Sequence instead of "
            "RescaleSlope/RescaleIntercept, which the loader does not apply. Convert the "
            "series to rescaled values first.", info.path)
