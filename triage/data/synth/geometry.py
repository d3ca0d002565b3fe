"""Series geometry in DICOM patient coordinates (LPS, mm): where every pixel of a series is.

Pixel ``(r, c)`` of slice ``k`` lies at
``positions[k] + c * pixel_spacing[1] * row_dir + r * pixel_spacing[0] * col_dir``
(DICOM: PixelSpacing is [row spacing, column spacing]; ``row_dir`` = IOP[:3] points along a
row, i.e. towards increasing column index). Values are rounded the way they are written to
the headers, so the geometry a reader reconstructs from the files is exactly this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_ORIENTATION_DECIMALS = 6
_SPACING_DECIMALS = 6
_POSITION_DECIMALS = 3


@dataclass(frozen=True, eq=False)
class SeriesGeometry:
    """Orientation, per-slice positions and pixel grid of one series.

    Attributes:
        orientation: ImageOrientationPatient (row direction, then column direction).
        positions: ImagePositionPatient per slice, shape (n, 3), in acquisition order.
        pixel_spacing: (row spacing, column spacing) in mm, as DICOM PixelSpacing.
        rows: Rows.
        columns: Columns.
        slice_thickness: SliceThickness in mm.
    """

    orientation: tuple[float, ...]
    positions: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slice_thickness: float

    def __post_init__(self) -> None:
        positions = np.array(self.positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
            raise ValueError(
                f"positions must have shape (n, 3) with n >= 1, got {positions.shape}.")
        if len(self.orientation) != 6:
            raise ValueError(f"orientation needs 6 values, got {len(self.orientation)}.")
        positions.setflags(write=False)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "orientation", tuple(float(v) for v in self.orientation))

    @property
    def n_slices(self) -> int:
        return len(self.positions)

    @property
    def row_dir(self) -> np.ndarray:
        """Unit vector along a row (increasing column index)."""
        return np.asarray(self.orientation[:3])

    @property
    def col_dir(self) -> np.ndarray:
        """Unit vector down a column (increasing row index)."""
        return np.asarray(self.orientation[3:])

    @property
    def normal(self) -> np.ndarray:
        """Slice normal, ``row_dir x col_dir``."""
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    @property
    def step_c(self) -> np.ndarray:
        """Displacement in mm of one column step."""
        return self.pixel_spacing[1] * self.row_dir

    @property
    def step_r(self) -> np.ndarray:
        """Displacement in mm of one row step."""
        return self.pixel_spacing[0] * self.col_dir

    def pixel_to_lps(self, k: int, r: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
        """LPS coordinates of pixel(s) ``(r, c)`` of slice `k`; shape ``(..., 3)``."""
        r = np.asarray(r, dtype=np.float64)[..., None]
        c = np.asarray(c, dtype=np.float64)[..., None]
        return self.positions[k] + c * self.step_c + r * self.step_r

    def nearest_voxel(self, point: Sequence[float]) -> tuple[int, float, float]:
        """The slice whose plane is nearest to `point`, and the point's (row, column) in it."""
        p = np.asarray(point, dtype=np.float64)
        distances = (p - self.positions) @ self.normal
        k = int(np.argmin(np.abs(distances)))
        d = p - self.positions[k]
        return k, float(d @ self.col_dir / self.pixel_spacing[0]), float(
            d @ self.row_dir / self.pixel_spacing[1])

    def covers(self, point: Sequence[float], margin_mm: float) -> bool:
        """True when `point` lies inside the imaged slab and field of view with a margin."""
        p = np.asarray(point, dtype=np.float64)
        d = (p - self.positions) @ self.normal
        if not (d.min() + margin_mm <= 0.0 <= d.max() - margin_mm):
            return False
        _, r, c = self.nearest_voxel(p)
        mr = margin_mm / self.pixel_spacing[0]
        mc = margin_mm / self.pixel_spacing[1]
        return mr <= r <= self.rows - 1 - mr and mc <= c <= self.columns - 1 - mc

    def z_range(self) -> tuple[float, float]:
        """Lowest and highest z (superior) reached by any pixel of the series."""
        corners = [self.pixel_to_lps(k, r, c) for k in (0, self.n_slices - 1)
                   for r in (0, self.rows - 1) for c in (0, self.columns - 1)]
        zs = [float(p[2]) for p in corners]
        return min(zs), max(zs)


def _round_vector(values: Sequence[float], decimals: int) -> tuple[float, ...]:
    return tuple(float(round(v, decimals)) + 0.0 for v in values)


def axial_geometry(
    *,
    center: Sequence[float],
    fov_mm: tuple[float, float],
    matrix: int,
    n_slices: int,
    spacing_mm: float,
    thickness_mm: float,
    prone: bool = False,
    tilt_deg: float = 0.0,
    feet_first: bool = False,
    dropped: Sequence[int] = (),
) -> SeriesGeometry:
    """An axial stack centred on `center` (LPS), acquired head to feet unless `feet_first`.

    Args:
        center: LPS point at the centre of the reconstructed stack.
        fov_mm: (extent down the columns, extent along the rows).
        matrix: rows = columns.
        n_slices: slices written (after dropping).
        spacing_mm: nominal table increment between slices.
        thickness_mm: SliceThickness.
        prone: head-first prone: rows run to patient right, columns to anterior.
        tilt_deg: gantry tilt; the column direction tilts, positions still move along z
            (the sheared stack dcm2niix reslices).
        feet_first: acquisition order along +z instead of -z.
        dropped: indices into the regular grid of ``n_slices + len(dropped)`` slices that
            are missing (irregular spacing).

    Raises:
        ValueError: if `n_slices` < 1 or a dropped index is outside the grid interior.
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}.")
    total = n_slices + len(dropped)
    if any(not 0 < d < total - 1 for d in dropped):
        raise ValueError(
            f"dropped slice indices must be interior to 0..{total - 1}, got {dropped}.")
    t = math.radians(tilt_deg)
    sign = -1.0 if prone else 1.0
    row_dir = np.array([sign, 0.0, 0.0])
    col_dir = np.array([0.0, sign * math.cos(t), -math.sin(t)])
    orientation = _round_vector([*row_dir, *col_dir], _ORIENTATION_DECIMALS)
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    spacing = (round(fov_mm[0] / matrix, _SPACING_DECIMALS),
               round(fov_mm[1] / matrix, _SPACING_DECIMALS))
    step = spacing_mm if feet_first else -spacing_mm
    keep = [i for i in range(total) if i not in set(dropped)]
    cx, cy, cz = (float(v) for v in center)
    positions = []
    for i in keep:
        plane_center = np.array([cx, cy, cz + (i - (total - 1) / 2.0) * step])
        corner = (plane_center - (matrix - 1) / 2.0 * spacing[1] * row_dir
                  - (matrix - 1) / 2.0 * spacing[0] * col_dir)
        positions.append(_round_vector(corner, _POSITION_DECIMALS))
    return SeriesGeometry(orientation, np.array(positions), spacing, matrix, matrix,
                          float(thickness_mm))


def coronal_geometry(
    *,
    center: Sequence[float],
    extent_mm: tuple[float, float],
    shape: tuple[int, int],
    y_planes: Sequence[float],
) -> SeriesGeometry:
    """Coronal planes (rows run to patient left, columns to feet) at the given y values.

    Args:
        center: LPS centre of the image (its y is replaced by each of `y_planes`).
        extent_mm: (superior-inferior extent, left-right extent).
        shape: (rows, columns).
        y_planes: anterior-posterior positions of the planes.
    """
    rows, cols = shape
    orientation = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    spacing = (round(extent_mm[0] / rows, _SPACING_DECIMALS),
               round(extent_mm[1] / cols, _SPACING_DECIMALS))
    positions = []
    for y in y_planes:
        corner = (float(center[0]) - (cols - 1) / 2.0 * spacing[1], float(y),
                  float(center[2]) + (rows - 1) / 2.0 * spacing[0])
        positions.append(_round_vector(corner, _POSITION_DECIMALS))
    return SeriesGeometry(orientation, np.array(positions), spacing, rows, cols, 1.0)
