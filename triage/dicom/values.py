r"""The one parser of header values (scan and loader alike), robust to malformed strings.

Numeric header values are parsed from the raw bytes, not through pydicom's converters:
pydicom (``reading_validation_mode`` WARN, the default) silently returns an over-long DS
such as ``'-125.000000000000000000'`` as a float but a junk one such as ``'abc'`` as a
*string*, and under RAISE both raise. Here every value that is a number is read as one
(as dcm2niix does), anything else becomes None, and each repair is noted in ``malformed``.

The scan (`triage.dicom.scan.record`) and the loader (`triage.dicom.pixels.slice_header`,
`triage.dicom.pixels.multiframe`) read every value through these functions, whichever reader
(`RawValues` from the raw walk, or a pydicom `Dataset`) holds the header. A slice's plane
geometry - ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness -
is read in one place, `frame_geometry`; enhanced multi-frame macros go through
`macro_geometry`, which calls it. The loader turns a value dropped here (a `Dropped`
note) into a `GeometryError`; the scan keeps the note in the record.

Example:
    >>> notes = []
    >>> decimals(RawValues({0x00200032: b"1\\2.5\\-125.000000000000000000"}), 0x00200032,
    ...          "ImagePositionPatient", 3, notes)
    (1.0, 2.5, -125.0)
    >>> notes
    ["ImagePositionPatient: DS value longer than 16 characters ('-125.000000000000000000')"]
    >>> decimals(RawValues({0x00180050: b"1_0"}), 0x00180050, "SliceThickness", 1, notes)
    >>> notes[-1], notes[-1].keyword
    ("SliceThickness: not a number ('1_0')", 'SliceThickness')
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from triage.dicom.tags import (
    FUNCTIONAL_GROUPS,
    IMAGE_ORIENTATION,
    IMAGE_POSITION,
    PER_FRAME_FUNCTIONAL_GROUPS,
    PIXEL_MEASURES_SEQUENCE,
    PIXEL_SPACING,
    PLANE_ORIENTATION_SEQUENCE,
    PLANE_POSITION_SEQUENCE,
    SHARED_FUNCTIONAL_GROUPS,
    SLICE_THICKNESS,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DS_CHARACTERS = frozenset("0123456789+-eE. ")
_DS_TEXT = _DS_CHARACTERS | {"\\"}  # a whole multi-valued DS


class RawValues:
    """Raw little-endian top-level values of one header, as `raw_header.walk_header` found them.

    Stands in for a pydicom `Dataset` read with ``stop_before_pixels=True`` in the
    functions below, so that the scan's fast path and its pydicom path share every
    parsing rule. Text values must be plain ASCII without ESC (the caller checks), which
    read the same in every character set.

    Attributes:
        values: tag -> raw value bytes.
        file_meta: the File Meta Information's values, likewise.
    """

    def __init__(self, values: Mapping[int, bytes],
                 file_meta: Mapping[int, bytes] | None = None) -> None:
        self.values = values
        self.file_meta = RawValues(file_meta) if file_meta is not None else None

    def get(self, tag: int) -> None:
        """No sequence is read from raw values (the fast path rejects functional groups)."""
        return None

    def __contains__(self, tag: object) -> bool:
        return tag in self.values


class Dropped(str):
    """A note saying that a value was present but unusable, so it reads as absent.

    Equal to its text (records keep notes as strings); the loader, which must not guess
    a geometry, raises on one. Attributes: `keyword`, `text` (the raw value), `expected`
    (the number of values expected).
    """

    keyword: str
    text: str
    expected: int

    def __new__(cls, message: str, keyword: str, text: str, expected: int) -> Dropped:
        note = super().__new__(cls, message)
        note.keyword, note.text, note.expected = keyword, text, expected
        return note

    def __reduce__(self) -> tuple:
        return Dropped, (str(self), self.keyword, self.text, self.expected)


@overload
def shared(text: str) -> str: ...
@overload
def shared(text: None) -> None: ...
def shared(text: str | None) -> str | None:
    """`text` as a plain, interned string: a value every file of a study or series repeats
    (its UIDs, the scanner's names, the transfer syntax) is then held once by a scan of the
    export, not once per file."""
    return sys.intern(str.__str__(text)) if text else text


def raw_text(ds: Dataset | RawValues, tag: int) -> str | None:
    """The element's value as text without conversion (ASCII VRs), stripped; None if empty."""
    if isinstance(ds, RawValues):
        raw = ds.values.get(tag)
        return (raw.decode("latin-1").strip("\0 ") or None) if raw else None
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Sequence):
        text = "\\".join(_original(v) for v in value)
    else:
        text = _original(value)
    text = text.strip("\0 ")
    return text or None


def _original(value: object) -> str:
    """The text a converted DS/IS value came from, else its str()."""
    original = getattr(value, "original_string", None)
    return str(original) if original is not None else str(value)


def decoded_text(ds: Dataset | RawValues, tag: int) -> str | None:
    """A text value decoded with the file's character set (LO, SH, PN...); None if empty."""
    if isinstance(ds, RawValues):
        return raw_text(ds, tag)  # plain ASCII: checked by the fast path
    from pydicom.dataelem import RawDataElement

    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        if elem.value.isascii() and b"\x1b" not in elem.value:
            # Plain ASCII reads the same in every DICOM character set but ISO 2022 (ESC).
            return elem.value.decode("ascii").strip("\0 ") or None
    try:
        value = ds[tag].value if tag in ds else None
    except Exception:  # noqa: BLE001 - an undecodable or invalid string: fall back to bytes
        return raw_text(ds, tag)
    text = str(value).strip("\0 ") if value is not None else ""
    return text or None


def multi_text(ds: Dataset | RawValues, tag: int) -> tuple[str, ...]:
    """A multi-valued code string (e.g. ImageType) as an upper-case tuple."""
    text = raw_text(ds, tag)
    return tuple(p.strip().upper() for p in text.split("\\")) if text else ()


def unsigned_short(ds: Dataset | RawValues, tag: int) -> int | None:
    """A US value (Rows, Columns...) in the data set's byte order."""
    if isinstance(ds, RawValues):
        raw = ds.values.get(tag)
        return int.from_bytes(raw[:2], "little") if raw is not None and len(raw) >= 2 else None
    from pydicom.dataelem import RawDataElement

    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    if isinstance(elem, RawDataElement):
        if len(elem.value) < 2:
            return None
        little = elem.is_little_endian
        return int.from_bytes(elem.value[:2], "little" if little else "big")
    value = elem.value
    if isinstance(value, bytes):  # an element read as UN
        return int.from_bytes(value[:2], "little") if len(value) >= 2 else None
    try:
        return int(value) if value != "" else None
    except (TypeError, ValueError):
        return None


def _show(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")


def decimals(
    ds: Dataset | RawValues, tag: int, keyword: str, count: int, notes: list[str]
) -> tuple[float, ...] | None:
    """Parse a DS value of `count` numbers; junk gives None, every repair adds a note."""
    text = raw_text(ds, tag)
    if text is None:
        return None
    if _DS_TEXT.issuperset(text):
        # The common case, in one pass: only DS characters, `count` numbers, none longer
        # than 16 characters, all finite. float() ignores the spaces that strip() drops
        # and rejects an empty part; anything else takes the checks below, which note it.
        parts = text.split("\\")
        if len(parts) == count and max(map(len, parts)) <= 16:
            try:
                numbers = tuple(map(float, parts))
            except ValueError:
                pass
            else:
                if all(map(math.isfinite, numbers)):
                    return numbers
    parts = [p.strip() for p in text.split("\\")]
    if len(parts) != count:
        notes.append(Dropped(f"{keyword}: expected {count} value(s), got {len(parts)}",
                             keyword, text, count))
        return None
    values = []
    for part in parts:
        if not part or not set(part) <= _DS_CHARACTERS:
            notes.append(Dropped(f"{keyword}: not a number ({_show(part)})", keyword, text,
                                 count))
            return None
        try:
            value = float(part)
        except ValueError:
            notes.append(Dropped(f"{keyword}: not a number ({_show(part)})", keyword, text,
                                 count))
            return None
        if not math.isfinite(value):
            notes.append(Dropped(f"{keyword}: not finite ({_show(part)})", keyword, text,
                                 count))
            return None
        values.append(value)
    overlong = [p for p in parts if len(p) > 16]
    if overlong:
        notes.append(f"{keyword}: DS value longer than 16 characters ({_show(overlong[0])})")
    return tuple(values)


def integer(ds: Dataset | RawValues, tag: int, keyword: str, notes: list[str]) -> int | None:
    """Parse a single IS value; a decimal with no fraction is accepted with a note."""
    text = raw_text(ds, tag)
    if text is None:
        return None
    text = text.split("\\")[0].strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text) if set(text) <= _DS_CHARACTERS else math.nan
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value == int(value):
        notes.append(f"{keyword}: IS value written as a decimal ({_show(text)})")
        return int(value)
    notes.append(Dropped(f"{keyword}: not an integer ({_show(text)})", keyword, text, 1))
    return None


@dataclass(frozen=True)
class Geometry:
    """Plane geometry of one image or frame, as parsed from the header."""

    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    spacing: tuple[float, ...] | None = None
    thickness: float | None = None


def plane_geometry(ds: Dataset | RawValues, notes: list[str]) -> Geometry:
    """Geometry from the top-level tags, else from enhanced multi-frame functional groups.

    For enhanced objects the first frame's macros are read (per-frame before shared, as
    the loader reads every frame); the position is therefore the first frame's.
    """
    geometry = frame_geometry(ds, notes)
    if geometry.orientation is not None or not any(tag in ds for tag in FUNCTIONAL_GROUPS):
        return geometry
    part = macro_geometry([first_item(ds, PER_FRAME_FUNCTIONAL_GROUPS),
                           first_item(ds, SHARED_FUNCTIONAL_GROUPS)], notes)
    return Geometry(
        geometry.position or part.position,
        geometry.orientation or part.orientation,
        geometry.spacing or part.spacing,
        geometry.thickness if geometry.thickness is not None else part.thickness,
    )


def first_item(ds: Dataset | RawValues | None, tag: int) -> Dataset | None:
    """The first item of the sequence `tag` in `ds`, or None (raw values hold none)."""
    if ds is None:
        return None
    elem = ds.get(tag)
    if elem is None or not elem.value:
        return None
    return elem.value[0]


#: The functional group macros holding plane geometry (PS3.3 C.7.6.16.2).
_GEOMETRY_MACROS = (PLANE_POSITION_SEQUENCE, PLANE_ORIENTATION_SEQUENCE, PIXEL_MEASURES_SEQUENCE)


def macro_geometry(groups: Sequence[Dataset | None], notes: list[str]) -> Geometry:
    """One frame's geometry from functional group items, the first group having each value.

    Args:
        groups: the frame's PerFrameFunctionalGroupsSequence item, then the
            SharedFunctionalGroupsSequence item (either may be None).
        notes: repairs and dropped values are appended here.
    """
    found: dict[str, object] = {}
    for group in groups:
        for macro_tag in _GEOMETRY_MACROS:
            item = first_item(group, macro_tag)
            if item is None:
                continue
            part = frame_geometry(item, notes)
            for name in ("position", "orientation", "spacing", "thickness"):
                if name not in found and getattr(part, name) is not None:
                    found[name] = getattr(part, name)
    return Geometry(**found)  # type: ignore[arg-type]


def frame_geometry(ds: Dataset | RawValues, notes: list[str]) -> Geometry:
    """The plane geometry one data set (or macro item) states: the one place it is read."""
    thickness = decimals(ds, SLICE_THICKNESS, "SliceThickness", 1, notes)
    return Geometry(
        decimals(ds, IMAGE_POSITION, "ImagePositionPatient", 3, notes),
        decimals(ds, IMAGE_ORIENTATION, "ImageOrientationPatient", 6, notes),
        decimals(ds, PIXEL_SPACING, "PixelSpacing", 2, notes),
        thickness[0] if thickness else None,
    )
