"""The loader's fast path: a single-frame little-endian file walked by `raw_header`.

`pydicom.dcmread` costs about 0.45 ms per CT slice on this machine, mostly in its
per-element generator; that alone exceeds the whole budget of dcm2niix (about 0.4 ms per
slice). CT series are almost always single-frame files in Explicit or Implicit VR Little
Endian, or in a compressed syntax (whose data set is Explicit VR Little Endian too), and
the loader needs some 25 top-level values plus the pixel bytes. `read_fast` reads the
file and walks it with the same strict walk the export scan uses
(`triage.dicom.raw_header.walk_header`), keeping the raw bytes of
`triage.dicom.tags.LOADER_TAGS` and locating the pixel data; compressed pixel data is
then handed, still encapsulated, to the decoder (`triage.dicom.decode`).

Whatever the walk declines, and every file with enhanced functional groups, float pixel
data or a pixel data length that contradicts its syntax, makes `read_fast` return None:
the loader then reads the file with `dcmread`. The values are parsed by
`triage.dicom.values` on both paths; the tests load series through both and require
identical volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triage.dicom.raw_header import NeedMoreBytes, Unsupported, walk_header
from triage.dicom.tags import FUNCTIONAL_GROUPS, LOADER_TAGS, PIXEL_DATA, UNDEFINED
from triage.dicom.values import RawValues


@dataclass(frozen=True)
class FastFile:
    """The result of a fast read.

    Attributes:
        tags: raw values of the wanted top-level tags.
        transfer_syntax: the file's transfer syntax (native or encapsulated, LE).
        data: the whole file's bytes (the pixel view refers into it).
        pixel_offset: byte offset of the PixelData value in `data`.
        pixel_length: byte length of the PixelData value; for encapsulated pixel data,
            the rest of the file (the decoder stops at the sequence delimiter).
        encapsulated: the pixel data is compressed, in items.
    """

    tags: RawValues
    transfer_syntax: str
    data: bytes
    pixel_offset: int
    pixel_length: int
    encapsulated: bool = False


def read_fast(path: Path) -> FastFile | None:
    """Read `path` quickly if it is a single-frame little-endian Part 10 file.

    Returns:
        The parsed file, or None when the file is outside this reader's scope (the caller
        then uses pydicom).

    Raises:
        OSError: when the file cannot be read at all.
    """
    with open(path, "rb") as fh:  # not Path.read_bytes: no Path object per file
        data = fh.read()
    try:
        header = walk_header(data, len(data), LOADER_TAGS)
    except (Unsupported, NeedMoreBytes, ValueError, UnicodeDecodeError):
        return None
    if header.pixel_tag != PIXEL_DATA or any(t in header.values for t in FUNCTIONAL_GROUPS):
        return None
    if header.encapsulated:
        if header.pixel_length != UNDEFINED:
            return None  # the length contradicts the syntax
        length = len(data) - header.pixel_offset
    else:
        length = header.pixel_length
        if length == UNDEFINED or header.pixel_offset + length > len(data):
            return None
    return FastFile(RawValues(header.values, header.meta), header.transfer_syntax, data,
                    header.pixel_offset, length, header.encapsulated)
