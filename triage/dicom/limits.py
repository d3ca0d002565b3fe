"""Resource caps for hostile or broken files: bytes inflated, pixels, frames, voxels.

A DICOM header is a promise the file need not keep: 1.4 MB of deflated data set can inflate
to 1.4 GiB, and a 132 KB study can declare 32 frames of 4096 x 4096 pixels (3.2 GB of
float32) or a 65535 x 65535 matrix (16 GiB per frame). Every cap here is checked on the
header (or while streaming the inflate) *before* anything of that size is allocated, and
breaking one raises `ResourceLimitError` naming the file, the value and the setting, so
that the study gets a failed report row instead of killing the process.

The defaults are in ``triage/configs/ingest/default.yaml`` (section ``limits``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from triage.errors import DicomError

_MIB = 1 << 20
_CHUNK = 1 << 16


class ResourceLimitError(DicomError):
    """A file or series declares (or inflates to) more than a `ResourceLimits` cap allows.

    Attributes:
        reason: the message without the path (for a scan record, whose path is its own).
    """

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        self.reason = message
        super().__init__(message, path)


@dataclass(frozen=True)
class ResourceLimits:
    """Per-instance and per-series caps, checked before memory is allocated.

    Attributes:
        max_inflated_bytes: largest data set a deflated file (Deflated Explicit VR Little
            Endian) may inflate to; the inflate is streamed and stops at the cap.
        max_frame_pixels: largest Rows x Columns of one frame.
        max_frames: largest NumberOfFrames of one instance.
        max_volume_voxels: largest frames x Rows x Columns of one series (the float32
            volume takes 4 bytes per voxel).
    """

    max_inflated_bytes: int = 512 * _MIB
    max_frame_pixels: int = 2048 * 2048
    max_frames: int = 4096
    max_volume_voxels: int = 1 << 29

    def __post_init__(self) -> None:
        for name in ("max_inflated_bytes", "max_frame_pixels", "max_frames",
                     "max_volume_voxels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ResourceLimits.{name} must be a positive integer, "
                                 f"got {value!r}.")

    def check_instance(self, rows: int | None, columns: int | None, frames: int | None,
                       path: Path) -> None:
        """Refuse one instance whose header declares too many pixels or frames.

        Raises:
            ResourceLimitError: naming `path`, the declared size and the setting.
        """
        pixels = (rows or 0) * (columns or 0)
        if pixels > self.max_frame_pixels:
            raise ResourceLimitError(
                f"The header declares {rows}x{columns} pixels per frame ({pixels:,}), more "
                f"than limits.max_frame_pixels={self.max_frame_pixels:,}; the file was not "
                "decoded. Raise the limit in the ingest config if such images are expected.",
                path)
        if (frames or 0) > self.max_frames:
            raise ResourceLimitError(
                f"The header declares {frames:,} frames, more than limits.max_frames="
                f"{self.max_frames:,}; the file was not decoded. Raise the limit in the "
                "ingest config if such images are expected.", path)

    def check_volume(self, sizes: list[tuple[int, int, int]], label: Path) -> None:
        """Refuse a series whose volume would exceed `max_volume_voxels`.

        Args:
            sizes: (frames, rows, columns) of each file of the series.
            label: the series (file or folder), named in the error.

        Raises:
            ResourceLimitError: naming `label`, the declared size and the setting.
        """
        voxels = sum(frames * rows * columns for frames, rows, columns in sizes)
        if voxels > self.max_volume_voxels:
            slices = sum(frames for frames, _, _ in sizes)
            raise ResourceLimitError(
                f"The series declares {slices:,} slices holding {voxels:,} voxels "
                f"({4 * voxels / 2**30:.1f} GiB as float32), more than "
                f"limits.max_volume_voxels={self.max_volume_voxels:,}; it was not stacked. "
                "Raise the limit in the ingest config if such volumes are expected.", label)


def check_inflated_size(fh: BinaryIO, limit: int, path: Path) -> int:
    """Stream-inflate the rest of `fh` (a raw deflate stream), stopping at `limit` bytes.

    Nothing inflated is kept: memory stays at a few chunks whatever the file holds.

    Args:
        fh: the file, positioned at the start of the deflated data set.
        limit: the most bytes the data set may inflate to.
        path: the file, named in the error.

    Returns:
        The inflated size (at most `limit`); a corrupt stream stops the count early and
        is left to the reader to report.

    Raises:
        ResourceLimitError: the data set inflates to more than `limit` bytes.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pending = b""
    while True:
        if not pending:
            pending = fh.read(_CHUNK)
            if not pending:
                return total
        try:
            out = inflater.decompress(pending, _CHUNK)
        except zlib.error:
            return total
        total += len(out)
        if total > limit:
            raise ResourceLimitError(
                f"The deflated data set inflates to more than limits.max_inflated_bytes="
                f"{limit:,} bytes (a compression bomb or a corrupt stream); the file was "
                "not read.", path)
        pending = inflater.unconsumed_tail
        if inflater.eof:
            return total


def check_deflated_file(fh: BinaryIO, limit: int, path: Path) -> None:
    """Check the inflated size of an open file whose meta names the deflated syntax.

    The file meta is read with pydicom's own steps (preamble, group 0002, command set), so
    the inflate starts exactly where ``dcmread`` would start its unbounded one. Anything
    unreadable is left to the reader to report. `fh` is left at its start.

    Raises:
        ResourceLimitError: the data set inflates to more than `limit` bytes.
    """
    import pydicom
    from pydicom import filereader

    try:
        fh.seek(0)
        filereader.read_preamble(fh, True)
        meta = filereader._read_file_meta_info(fh)  # noqa: SLF001 - dcmread's own step
        filereader._read_command_set_elements(fh)  # noqa: SLF001
        deflated = meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian
    except Exception:  # noqa: BLE001 - a broken meta is the reader's to report
        deflated = False
    try:
        if deflated:
            check_inflated_size(fh, limit, path)
    finally:
        fh.seek(0)
