"""Frame geometry of multi-frame files: enhanced functional groups, RT Dose grids.

An enhanced multi-frame object (Enhanced CT/MR/PET, NumberOfFrames > 1) describes each
frame in PerFrameFunctionalGroupsSequence, with values common to all frames in
SharedFunctionalGroupsSequence; a per-frame macro overrides the shared one. The macros
read here are PlanePositionSequence (ImagePositionPatient), PlaneOrientationSequence
(ImageOrientationPatient), PixelMeasuresSequence (PixelSpacing) and
PixelValueTransformationSequence (RescaleSlope/Intercept).

A classic multi-frame image has one ImagePositionPatient for all frames; its geometry is
derivable only when the frame offsets are given, as in RT Dose (GridFrameOffsetVector).
Anything else is rejected: the loader never invents positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage.dicom.slice_header import (
    DatasetTags,
    FrameHeader,
    ImageInfo,
    parse_decimal,
    parse_decimals,
    read_frame_header,
)
from triage.dicom.volume import GeometryVerdict
from triage.errors import DicomError, GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_MEMBER_TAGS = {
    "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037,
    "PixelSpacing": 0x00280030,
    "RescaleSlope": 0x00281053,
    "RescaleIntercept": 0x00281052,
    "GridFrameOffsetVector": 0x3004000C,
    "DoseGridScaling": 0x3004000E,
}
_MACROS = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
}
_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def is_enhanced(ds: Dataset) -> bool:
    """True when `ds` carries per-frame functional groups."""
    return "PerFrameFunctionalGroupsSequence" in ds


def frame_headers(ds: Dataset, info: ImageInfo, file_index: int) -> list[FrameHeader]:
    """One `FrameHeader` per frame of the file `ds` (single- or multi-frame).

    Raises:
        GeometryError: a multi-frame file whose frame positions cannot be derived
            (verdict ``missing-positions``) or whose values are malformed.
        DicomError: the functional groups disagree with NumberOfFrames.
    """
    if is_enhanced(ds):
        return _enhanced(ds, info, file_index)
    if info.n_frames == 1:
        return [read_frame_header(DatasetTags(ds), info.path, file_index)]
    if "GridFrameOffsetVector" in ds:
        return _grid_offsets(ds, info, file_index)
    raise GeometryError(
        f"This is a classic multi-frame image ({info.n_frames} frames) with no per-frame "
        "positions (no functional groups, no GridFrameOffsetVector), so the frames cannot "
        "be placed in space. Export it as an enhanced multi-frame or as single-frame files.",
        info.path, verdict=GeometryVerdict.MISSING_POSITIONS)


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _member(
    groups: list[Dataset | None], keyword: str, count: int, path: Path
) -> np.ndarray | None:
    """The first `groups` entry (per-frame, then shared) whose macro has `keyword`."""
    for group in groups:
        item = _first_item(group, _MACROS[keyword])
        if item is not None and _MEMBER_TAGS[keyword] in item:
            return parse_decimals(DatasetTags(item), keyword, count, path,
                                  tag=_MEMBER_TAGS[keyword])
    return None


def _enhanced(ds: Dataset, info: ImageInfo, file_index: int) -> list[FrameHeader]:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != info.n_frames:
        raise DicomError(
            f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items but "
            f"NumberOfFrames is {info.n_frames}; the file is inconsistent.", info.path)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    top = DatasetTags(ds)
    headers = []
    for index, frame in enumerate(per_frame):
        groups = [frame, shared]
        spacing = _member(groups, "PixelSpacing", 2, info.path)
        slope = _member(groups, "RescaleSlope", 1, info.path)
        intercept = _member(groups, "RescaleIntercept", 1, info.path)
        headers.append(FrameHeader(
            file_index=file_index,
            frame_index=index,
            position=_member(groups, "ImagePositionPatient", 3, info.path),
            orientation=_member(groups, "ImageOrientationPatient", 6, info.path),
            pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
            slope=float(slope[0]) if slope is not None else parse_decimal(
                top, "RescaleSlope", info.path, 1.0),
            intercept=float(intercept[0]) if intercept is not None else parse_decimal(
                top, "RescaleIntercept", info.path, 0.0),
        ))
    return headers


def _grid_offsets(ds: Dataset, info: ImageInfo, file_index: int) -> list[FrameHeader]:
    """RT Dose style: one position, frames offset along the normal by GridFrameOffsetVector."""
    tags = DatasetTags(ds)
    base = read_frame_header(tags, info.path, file_index)
    offsets = parse_decimals(tags, "GridFrameOffsetVector", info.n_frames, info.path,
                             tag=_MEMBER_TAGS["GridFrameOffsetVector"])
    if base.position is None or base.orientation is None or offsets is None:
        raise GeometryError(
            "This multi-frame image lacks ImagePositionPatient or ImageOrientationPatient, "
            "so GridFrameOffsetVector cannot place its frames.", info.path,
            verdict=GeometryVerdict.MISSING_POSITIONS)
    if offsets[0] != 0.0:
        # Absolute z coordinates: allowed by the standard for axial grids only.
        if np.max(np.abs(base.orientation - _AXIAL)) > 1e-4:
            raise GeometryError(
                f"GridFrameOffsetVector starts at {offsets[0]:g} (absolute z values), which "
                "the standard allows only for axial ImageOrientationPatient; this one is "
                f"{np.round(base.orientation, 4).tolist()}.", info.path,
                verdict=GeometryVerdict.MALFORMED)
        offsets = offsets - offsets[0]
    normal = np.cross(base.orientation[:3], base.orientation[3:])
    scaling = parse_decimal(tags, "DoseGridScaling", info.path, 1.0,
                            tag=_MEMBER_TAGS["DoseGridScaling"])
    return [
        FrameHeader(file_index, k, base.position + offset * normal, base.orientation,
                    base.pixel_spacing, base.slope * scaling, base.intercept)
        for k, offset in enumerate(offsets)
    ]
