"""Headers the scan has already walked, handed to the loader in the same process.

An inline ingest (``workers=1``) walks every header twice: once in the scan, once in the
loader's fast reader. The scan's fast path (`triage.dicom.header_fast`) therefore keeps,
for each file it read, the header bytes up to the pixel data and what the walk found; the
fast reader (`triage.dicom.fast_reader.read_fast`) reuses them when the file it has just
read starts with exactly those bytes and is as long as before. Equal bytes make the walk's
result certain (it is a function of them and of the file length), so nothing is trusted
that was not checked: a file changed since the scan is simply walked again.

The memo is per process and bounded (`MAX_HINTS` entries of ~1-3 KiB, least recently
added dropped first), so memory stays bounded by the export's first few thousand files;
a scan in worker processes leaves no hints in the loading process, which then walks the
headers as before.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from triage.dicom.raw_header import UNDEFINED, RawHeader

#: Headers kept at most (about 2 KiB each for CT slices).
MAX_HINTS = 4096
_PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class HeaderHint:
    """What the scan's walk found in one file.

    Attributes:
        prefix: the file's bytes up to the pixel data value.
        size: the file's size.
        header: the walk's result.
    """

    prefix: bytes
    size: int
    header: RawHeader


_HINTS: OrderedDict[str, HeaderHint] = OrderedDict()


def remember(path: Path | str, header: RawHeader, data: bytes, size: int) -> None:
    """Keep the walk of `path` (whose first bytes are `data`) for the loader."""
    if header.pixel_tag != _PIXEL_DATA or header.pixel_offset > len(data):
        return  # the fast reader only takes (7FE0,0010) pixel data
    if header.encapsulated != (header.pixel_length == UNDEFINED):
        return
    key = os.fspath(path)
    _HINTS[key] = HeaderHint(data[:header.pixel_offset], size, header)
    _HINTS.move_to_end(key)
    while len(_HINTS) > MAX_HINTS:
        _HINTS.popitem(last=False)


def recall(path: Path | str, data: bytes) -> RawHeader | None:
    """The remembered walk of `path` if `data` (the whole file) still matches it."""
    hint = _HINTS.pop(os.fspath(path), None)  # one use: the loader reads a file once
    if hint is None or len(data) != hint.size or not data.startswith(hint.prefix):
        return None
    return hint.header


def forget() -> None:
    """Drop every hint (tests; long-lived processes between exports)."""
    _HINTS.clear()
