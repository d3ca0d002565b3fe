"""Header values parsed from raw bytes, robust to malformed decimal strings.

Numeric header values are parsed from the raw bytes, not through pydicom's converters:
pydicom (``reading_validation_mode`` WARN, the default) silently returns an over-long DS
such as ``'-125.000000000000000000'`` as a float but a junk one such as ``'abc'`` as a
*string*, and under RAISE both raise. Here every value that is a number is read as one
(as dcm2niix does), anything else becomes None, and each repair is noted in ``malformed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DS_CHARACTERS = frozenset("0123456789+-eE. ")


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
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip("\0 ")
    return text or None


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
    return int(elem.value)


def _show(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")


def decimals(
    ds: Dataset | RawValues, tag: int, keyword: str, count: int, notes: list[str]
) -> tuple[float, ...] | None:
    """Parse a DS value of `count` numbers; junk gives None, every repair adds a note."""
    text = raw_text(ds, tag)
    if text is None:
        return None
    parts = [p.strip() for p in text.split("\\")]
    if len(parts) != count:
        notes.append(f"{keyword}: expected {count} value(s), got {len(parts)}")
        return None
    values = []
    for part in parts:
        if not part or not set(part) <= _DS_CHARACTERS:
            notes.append(f"{keyword}: not a number ({_show(part)})")
            return None
        try:
            value = float(part)
        except ValueError:
            notes.append(f"{keyword}: not a number ({_show(part)})")
            return None
        if not math.isfinite(value):
            notes.append(f"{keyword}: not finite ({_show(part)})")
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
    notes.append(f"{keyword}: not an integer ({_show(text)})")
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

    For enhanced objects the shared functional groups are read first, then the first
    frame's; the position is therefore the first frame's.
    """
    geometry = _geometry_from(ds, notes)
    if geometry.orientation is not None:
        return geometry
    for groups_tag in (0x52009229, 0x52009230):  # Shared, then PerFrame FunctionalGroups
        groups = ds.get(groups_tag)
        if groups is None or not groups.value:
            continue
        # PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence
        for macro_tag in (0x00209113, 0x00209116, 0x00289110):
            macro = groups.value[0].get(macro_tag)
            if macro is None or not macro.value:
                continue
            part = _geometry_from(macro.value[0], notes)
            geometry = Geometry(
                geometry.position or part.position,
                geometry.orientation or part.orientation,
                geometry.spacing or part.spacing,
                geometry.thickness if geometry.thickness is not None else part.thickness,
            )
    return geometry


def _geometry_from(ds: Dataset | RawValues, notes: list[str]) -> Geometry:
    thickness = decimals(ds, 0x00180050, "SliceThickness", 1, notes)
    return Geometry(
        decimals(ds, 0x00200032, "ImagePositionPatient", 3, notes),
        decimals(ds, 0x00200037, "ImageOrientationPatient", 6, notes),
        decimals(ds, 0x00280030, "PixelSpacing", 2, notes),
        thickness[0] if thickness else None,
    )
