"""`Volume`: a 3D image with its geometry, its verdict (`triage.dicom.verdict`) and provenance.

Conventions (stated once, used everywhere):
    * ``Volume.array`` is float32 indexed ``[i, j, k]`` = ``[column, row, slice]``, i.e.
      (x, y, z) in voxel terms, the NIfTI/ITK order. A pydicom stack ``[slice, row, col]``
      becomes this by ``transpose(2, 1, 0)``.
    * ``Volume.affine`` maps a voxel index ``(i, j, k, 1)`` to DICOM patient coordinates
      **LPS** in millimetres. Column 0 is the row direction (ImageOrientationPatient[:3])
      times the column spacing (PixelSpacing[1]); column 1 is the column direction
      (ImageOrientationPatient[3:]) times the row spacing (PixelSpacing[0]); column 2 is the
      step between consecutive slices after sorting along the slice normal.
    * `ras_affine` gives the same geometry in NIfTI's RAS convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triage.dicom.verdict import GeometryVerdict

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A 3D volume: pixel values, voxel-to-LPS affine, verdict, warnings and provenance.

    Attributes:
        array: float32 array ``[column, row, slice]`` in modality units (HU for CT).
        affine: 4x4 voxel index -> LPS mm.
        modality: DICOM Modality of the source series (``"CT"``, ``"MR"``, ...).
        verdict: the geometry verdict.
        warnings: human-readable notes (irregular spacing resampled, tilt, ...).
        provenance: study/series UIDs, device group, file count, transfer syntax, ...
            Never patient identifiers.
        slice_positions: None for a regular grid (slice ``k`` at ``k`` times the affine's
            third column). For irregularly spaced slices left as acquired
            (``load_series(..., keep_irregular=True)``): each slice's position in mm along
            the affine's third column from slice 0, whose length is then the median step
            (a nominal grid); preprocessing interpolates them once, onto its own grid.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str = "CT"
    verdict: GeometryVerdict = GeometryVerdict.OK
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    slice_positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3D, got shape {self.array.shape}.")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got {self.affine.shape}.")
        if self.slice_positions is not None and (
                np.shape(self.slice_positions) != (self.array.shape[2],)
                or np.any(np.diff(self.slice_positions) <= 0)):
            raise ValueError(f"Volume.slice_positions must hold one increasing position per "
                             f"slice ({self.array.shape[2]}), got {self.slice_positions!r}.")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 direction cosines (columns = i, j, k axes) in LPS, as SimpleITK reports them."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """LPS position of voxel (0, 0, 0) in mm."""
        return self.affine[:3, 3].copy()

    @property
    def ras_affine(self) -> np.ndarray:
        """The affine in NIfTI's RAS+ convention."""
        return LPS_TO_RAS @ self.affine
