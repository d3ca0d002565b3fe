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

from typing import TYPE_CHECKING

import numpy as np

from triage.dicom import tags
from triage.dicom.pixels.slice_header import (
    FrameHeader,
    ImageInfo,
    check_dropped,
    decimal,
    frame_header,
    read_frame_header,
)
from triage.dicom.values import decimals, first_item, macro_geometry
from triage.dicom.verdict import GeometryVerdict
from triage.errors import DicomError, GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def is_enhanced(ds: Dataset) -> bool:
    """True when `ds` carries per-frame functional groups."""
    return tags.PER_FRAME_FUNCTIONAL_GROUPS in ds


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
        return [read_frame_header(ds, info.path, file_index)]
    if tags.GRID_FRAME_OFFSET_VECTOR in ds:
        return _grid_offsets(ds, info, file_index)
    raise GeometryError(
        f"This is a classic multi-frame image ({info.n_frames} frames) with no per-frame "
        "positions (no functional groups, no GridFrameOffsetVector), so the frames cannot "
        "be placed in space. Export it as an enhanced multi-frame or as single-frame files.",
        info.path, verdict=GeometryVerdict.MISSING_POSITIONS)


def _rescale(groups: list[Dataset | None], ds: Dataset, info: ImageInfo
             ) -> tuple[float, float]:
    """RescaleSlope/Intercept from PixelValueTransformationSequence, else the top level."""
    found: list[float] = []
    for tag, keyword, default in ((tags.RESCALE_SLOPE, "RescaleSlope", 1.0),
                                  (tags.RESCALE_INTERCEPT, "RescaleIntercept", 0.0)):
        for group in groups:
            item = first_item(group, tags.PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
            if item is not None and tag in item:
                found.append(decimal(item, tag, keyword, info.path, default))
                break
        else:
            found.append(decimal(ds, tag, keyword, info.path, default))
    return found[0], found[1]


def _enhanced(ds: Dataset, info: ImageInfo, file_index: int) -> list[FrameHeader]:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != info.n_frames:
        raise DicomError(
            f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items but "
            f"NumberOfFrames is {info.n_frames}; the file is inconsistent.", info.path)
    shared = first_item(ds, tags.SHARED_FUNCTIONAL_GROUPS)
    headers = []
    for index, frame in enumerate(per_frame):
        groups = [frame, shared]
        notes: list[str] = []
        geometry = macro_geometry(groups, notes)
        check_dropped(notes, info.path)
        slope, intercept = _rescale(groups, ds, info)
        headers.append(frame_header(file_index, index, geometry.position,
                                    geometry.orientation, geometry.spacing, slope, intercept))
    return headers


def _grid_offsets(ds: Dataset, info: ImageInfo, file_index: int) -> list[FrameHeader]:
    """RT Dose style: one position, frames offset along the normal by GridFrameOffsetVector."""
    base = read_frame_header(ds, info.path, file_index)
    notes: list[str] = []
    values = decimals(ds, tags.GRID_FRAME_OFFSET_VECTOR, "GridFrameOffsetVector",
                      info.n_frames, notes)
    check_dropped(notes, info.path)
    if base.position is None or base.orientation is None or values is None:
        raise GeometryError(
            "This multi-frame image lacks ImagePositionPatient or ImageOrientationPatient, "
            "so GridFrameOffsetVector cannot place its frames.", info.path,
            verdict=GeometryVerdict.MISSING_POSITIONS)
    offsets = np.asarray(values, dtype=np.float64)
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
    scaling = decimal(ds, tags.DOSE_GRID_SCALING, "DoseGridScaling", info.path, 1.0)
    return [
        FrameHeader(file_index, k, base.position + offset * normal, base.orientation,
                    base.pixel_spacing, base.slope * scaling, base.intercept)
        for k, offset in enumerate(offsets)
    ]
