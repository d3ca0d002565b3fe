"""The loader's fast path: a single-frame little-endian file walked by `raw_header`.

`pydicom.dcmread` costs about 0.45 ms per CT slice on this machine, mostly in its
per-element generator; that alone exceeds the whole budget of dcm2niix (about 0.4 ms per
slice). CT series are almost always single-frame files in Explicit or Implicit VR Little
Endian, or in a compressed syntax (whose data set is Explicit VR Little Endian too), and
the loader needs some 25 top-level values plus the pixel bytes. `read_fast` reads the
file and walks it with the same strict walk the export scan uses
(`triage.dicom.raw_header.walk_header`), keeping the raw bytes of
`triage.dicom.tags.LOADER_TAGS` and locating the pixel data; compressed pixel data is
then handed, still encapsulated, to the decoder (`triage.dicom.pixels.decode`).

Whatever the walk declines, and every file with enhanced functional groups, float pixel
data or a pixel data length that contradicts its syntax, makes `read_fast` return None:
the loader then reads the file with `dcmread`. The values are parsed by
`triage.dicom.values` on both paths; the tests load series through both and require
identical volumes.

The export scan has already walked every file once (`triage.dicom.scan.header_fast`); for a
file this reader would take, it hands what its walk found to the loader in the file's
record (`WalkedHeader`: the raw values of `LOADER_TAGS` and where the pixel data lies),
so that `read_fast` reads the bytes and checks that the pixel data element is where the
scan found it instead of walking the header again. The values are still parsed by the
loader, from those raw bytes, with the same parser (`triage.dicom.values`).
"""

from __future__ import annotations

import functools
import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

from triage.dicom.raw_header import NeedMoreBytes, RawHeader, Unsupported, walk_header
from triage.dicom.tags import (
    FUNCTIONAL_GROUPS,
    IMPLICIT_VR_LE,
    LOADER_TAGS,
    PIXEL_DATA,
    UNDEFINED,
)
from triage.dicom.values import RawValues, shared

#: The pixel data element's tag as its first four bytes in a little-endian file.
_PIXEL_DATA_TAG = struct.pack("<HH", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF)


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


@dataclass(frozen=True, slots=True)
class WalkedHeader:
    """What the scan's walk of one file found that `read_fast` would walk again.

    Carried from the scan to the loader in the file's `InstanceRecord` (data passed
    along, not a cache): only for a file `read_fast` takes, with the same checks. An
    export's scan holds one per file, so the raw values are packed into one byte string
    (about 0.5 kB a file, against 2.3 kB as a dict of byte strings); `values` unpacks
    them when the loader reads the file.

    Attributes:
        tags: the `LOADER_TAGS` present, in order.
        packed: their raw values, one after the other.
        ends: where each value ends in `packed` (little-endian uint32s).
        transfer_syntax: the file's transfer syntax.
        file_size: the file's size when it was walked.
        pixel_offset: byte offset of the PixelData value.
        pixel_length: as `FastFile.pixel_length`.
        encapsulated: the pixel data is compressed, in items.
    """

    tags: tuple[int, ...]
    packed: bytes
    ends: bytes
    transfer_syntax: str
    file_size: int
    pixel_offset: int
    pixel_length: int
    encapsulated: bool

    @classmethod
    def pack(cls, values: dict[int, bytes], transfer_syntax: str, file_size: int,
             pixel_offset: int, pixel_length: int, encapsulated: bool) -> WalkedHeader:
        """A walked header holding `values` (tag: raw value) packed."""
        ends = list(itertools.accumulate(len(v) for v in values.values()))
        return cls(_shared_tags(tuple(values)), b"".join(values.values()),
                   struct.pack(f"<{len(ends)}I", *ends), shared(transfer_syntax), file_size,
                   pixel_offset, pixel_length, encapsulated)

    @property
    def values(self) -> dict[int, bytes]:
        """The raw values by tag."""
        ends = struct.unpack(f"<{len(self.tags)}I", self.ends)
        return {tag: self.packed[start:end]
                for tag, start, end in zip(self.tags, (0, *ends), ends, strict=False)}


@functools.lru_cache(maxsize=64)
def _shared_tags(tags: tuple[int, ...]) -> tuple[int, ...]:
    # Files of one export carry the same few sets of tags: one tuple for each set.
    return tags


def walked_header(header: RawHeader, size: int) -> WalkedHeader | None:
    """The part of a walk of a file of `size` bytes that `read_fast` would use.

    Args:
        header: the walk, with at least `LOADER_TAGS` wanted.
        size: the file's size.

    Returns:
        None when `read_fast` would decline the file (not a single image with pixel data
        of a length its syntax allows, or enhanced functional groups).
    """
    if header.pixel_tag != PIXEL_DATA or any(t in header.values for t in FUNCTIONAL_GROUPS):
        return None
    if header.encapsulated:
        if header.pixel_length != UNDEFINED:
            return None  # the length contradicts the syntax
        length = size - header.pixel_offset
    else:
        length = header.pixel_length
        if length == UNDEFINED or header.pixel_offset + length > size:
            return None
    values = header.values
    return WalkedHeader.pack({t: values[t] for t in LOADER_TAGS if t in values},
                             header.transfer_syntax, size, header.pixel_offset, length,
                             header.encapsulated)


def read_fast(path: Path, walked: WalkedHeader | None = None) -> FastFile | None:
    """Read `path` quickly if it is a single-frame little-endian Part 10 file.

    Args:
        path: the file.
        walked: what the export scan's walk of this file found, if it has one: the
            header is then not walked again, provided the file still has the size it had
            and its pixel data element still starts where the scan found it (otherwise
            it is walked as usual).

    Returns:
        The parsed file, or None when the file is outside this reader's scope (the caller
        then uses pydicom).

    Raises:
        OSError: when the file cannot be read at all.
    """
    with open(path, "rb") as fh:  # not Path.read_bytes: no Path object per file
        data = fh.read()
    if walked is not None and _still_matches(data, walked):
        return FastFile(RawValues(walked.values), walked.transfer_syntax, data,
                        walked.pixel_offset, walked.pixel_length, walked.encapsulated)
    try:
        header = walk_header(data, len(data), LOADER_TAGS)
    except (Unsupported, NeedMoreBytes, ValueError, UnicodeDecodeError):
        return None
    found = walked_header(header, len(data))
    if found is None:
        return None
    return FastFile(RawValues(found.values, header.meta), found.transfer_syntax, data,
                    found.pixel_offset, found.pixel_length, found.encapsulated)


def _still_matches(data: bytes, walked: WalkedHeader) -> bool:
    """Whether `data` has the walked size and the PixelData tag where the walk found it."""
    head = walked.pixel_offset - (8 if walked.transfer_syntax == IMPLICIT_VR_LE else 12)
    return (len(data) == walked.file_size and head >= 132
            and data[head:head + 4] == _PIXEL_DATA_TAG)
