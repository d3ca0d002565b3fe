"""Pure slice-stack geometry: normal, sort, spacing analysis, verdict, affine, resampling.

Nothing here reads files. Positions and orientations are DICOM LPS millimetres; a stack
array is indexed ``[slice, row, column]`` in the sorted order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from triage.dicom.verdict import GeometryVerdict


def unit_axes(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal (unit vectors) of an IOP.

    The normal is ``cross(row, column)``, so sorting ascending along it gives a
    right-handed voxel grid.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    row = iop[:3] / np.linalg.norm(iop[:3])
    col = iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def orientation_problem(orientation: np.ndarray, tolerance: float = 1e-2) -> str | None:
    """Why an ImageOrientationPatient is unusable, or None when it is two orthonormal vectors.

    Args:
        orientation: the six direction cosines.
        tolerance: allowed deviation of each norm from 1 and of the dot product from 0
            (rounding in the header makes exact checks useless).
    """
    iop = np.asarray(orientation, dtype=np.float64)
    norms = np.linalg.norm(iop[:3]), np.linalg.norm(iop[3:])
    if min(norms) < 1e-6:
        return "a direction vector is zero"
    if max(abs(n - 1.0) for n in norms) > tolerance:
        return f"direction vectors have lengths {norms[0]:.4f} and {norms[1]:.4f}, not 1"
    dot = float(iop[:3] @ iop[3:]) / (norms[0] * norms[1])
    if abs(dot) > tolerance:
        return f"row and column directions are not orthogonal (cosine {dot:.4f})"
    return None


def group_orientations(orientations: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Group frames whose six cosines all agree within `tolerance`; largest group first."""
    groups: list[list[int]] = []
    representatives: list[np.ndarray] = []
    for index, iop in enumerate(np.asarray(orientations, dtype=np.float64)):
        for members, rep in zip(groups, representatives, strict=True):
            if np.max(np.abs(iop - rep)) <= tolerance:
                members.append(index)
                break
        else:
            groups.append([index])
            representatives.append(iop)
    ordered = sorted(groups, key=lambda g: (-len(g), g[0]))
    return [np.asarray(g, dtype=np.intp) for g in ordered]


@dataclass(frozen=True)
class StackAnalysis:
    """How a set of slices lies along its normal.

    Attributes:
        order: input indices sorted ascending along the normal (stable for ties).
        offsets: sorted positions along the normal (mm).
        duplicates: groups of input indices that share one position (within tolerance).
        steps: distances between consecutive distinct positions (mm).
        median_step: the median of `steps` (0 when fewer than two distinct positions).
        gaps: (sorted index after which the gap opens, step) for steps > gap factor x median.
        irregular: steps differ from the median by more than the tolerance, without gaps.
        tilt_deg: angle between the first-to-last position vector and the normal.
    """

    order: np.ndarray
    offsets: np.ndarray
    duplicates: list[np.ndarray]
    steps: np.ndarray
    median_step: float
    gaps: list[tuple[int, float]] = field(default_factory=list)
    irregular: bool = False
    tilt_deg: float = 0.0

    @property
    def min_step(self) -> float:
        return float(self.steps.min()) if self.steps.size else 0.0

    @property
    def max_step(self) -> float:
        return float(self.steps.max()) if self.steps.size else 0.0

    @property
    def mean_step(self) -> float:
        """(last - first) / (n - 1) over the sorted offsets."""
        n = self.offsets.size
        return float((self.offsets[-1] - self.offsets[0]) / (n - 1)) if n > 1 else 0.0


def analyze_stack(
    positions: np.ndarray,
    normal: np.ndarray,
    *,
    duplicate_tolerance_mm: float = 0.01,
    gap_factor: float = 1.5,
    spacing_tolerance: float = 0.01,
    spacing_tolerance_mm: float = 0.01,
) -> StackAnalysis:
    """Sort slices along `normal` and describe duplicates, gaps, irregularity and tilt.

    Args:
        positions: ImagePositionPatient per slice, shape (n, 3).
        normal: unit slice normal.
        duplicate_tolerance_mm: positions closer than this along the normal coincide.
        gap_factor: a step larger than this times the median step is a gap.
        spacing_tolerance: relative deviation of a step from the median that counts as
            irregular (0.01 = 1 %, as highdicom).
        spacing_tolerance_mm: absolute floor of that deviation, so that header rounding
            (e.g. positions written with two decimals) is not called irregular.
    """
    positions = np.asarray(positions, dtype=np.float64)
    raw_offsets = positions @ normal
    order = np.argsort(raw_offsets, kind="stable")
    offsets = raw_offsets[order]
    diffs = np.diff(offsets)
    same = diffs <= duplicate_tolerance_mm
    duplicates: list[np.ndarray] = []
    start = 0
    for k in range(1, offsets.size + 1):
        if k == offsets.size or not same[k - 1]:
            if k - start > 1:
                duplicates.append(order[start:k])
            start = k
    steps = diffs[~same]
    median = median_of(steps) if steps.size else 0.0
    gaps = [(int(k), float(d)) for k, d in enumerate(diffs)
            if not same[k] and median > 0 and d > gap_factor * median]
    limit = max(spacing_tolerance * median, spacing_tolerance_mm)
    irregular = bool(steps.size and not gaps and np.max(np.abs(steps - median)) > limit)
    span = positions[order[-1]] - positions[order[0]]
    tilt = 0.0
    if np.linalg.norm(span) > duplicate_tolerance_mm:
        cosine = abs(float(span @ normal)) / float(np.linalg.norm(span))
        tilt = math.degrees(math.acos(min(1.0, cosine)))
    return StackAnalysis(order, offsets, duplicates, steps, median, gaps, irregular, tilt)


def stack_verdict(
    analysis: StackAnalysis,
    *,
    header_tilt_deg: float,
    tilt_tolerance_deg: float,
    resample_irregular: bool,
) -> tuple[GeometryVerdict, list[GeometryVerdict]]:
    """The stack's verdict and every flag that applies, most severe first.

    Untrustworthy findings win (duplicates, then gaps, then forbidden irregularity);
    among trustworthy ones a tilt outranks resampling.
    """
    flags: list[GeometryVerdict] = []
    if analysis.duplicates:
        flags.append(GeometryVerdict.DUPLICATES)
    if analysis.gaps:
        flags.append(GeometryVerdict.GAPS)
    if analysis.irregular and not resample_irregular:
        flags.append(GeometryVerdict.IRREGULAR)
    if analysis.tilt_deg > tilt_tolerance_deg or abs(header_tilt_deg) > tilt_tolerance_deg:
        flags.append(GeometryVerdict.TILT)
    if analysis.irregular and resample_irregular:
        flags.append(GeometryVerdict.RESAMPLED_IRREGULAR)
    return (flags[0] if flags else GeometryVerdict.OK), flags


def in_plane_shifts(
    positions: np.ndarray, row: np.ndarray, col: np.ndarray, pixel_spacing: tuple[float, float]
) -> np.ndarray:
    """Each slice's in-plane offset from the first, in (row, column) pixels, shape (n, 2)."""
    delta = np.asarray(positions, dtype=np.float64) - positions[0]
    return np.stack([delta @ col / pixel_spacing[0], delta @ row / pixel_spacing[1]], axis=1)


def reslice_tilt(stack: np.ndarray, shifts: np.ndarray, fill: float,
                 *, out: np.ndarray | None = None) -> np.ndarray:
    """Undo a gantry tilt: resample each slice onto the first slice's in-plane grid.

    Slice k's pixel (r, c) lies at in-plane pixel (r - shift_r, c - shift_c) of the
    orthogonal grid; bilinear interpolation, `fill` outside the acquired field of view.

    Args:
        stack: float32 ``[slice, row, column]``, sorted along the normal.
        shifts: `in_plane_shifts` of the sorted slices.
        fill: value for voxels outside the acquired field of view.
        out: where to write the result; may be `stack` itself (each slice is resampled
            from a copy of itself), which saves a volume-sized allocation.
    """
    out = np.empty_like(stack) if out is None else out
    for k in range(stack.shape[0]):
        row, col = float(shifts[k, 0]), float(shifts[k, 1])
        if abs(row) < 1e-6 and abs(col) < 1e-6:
            if out is not stack:
                out[k] = stack[k]
            continue
        out[k] = _shift_axis(_shift_axis(stack[k], row, 0, fill), col, 1, fill)
    return out


def _shift_axis(image: np.ndarray, shift: float, axis: int, fill: float) -> np.ndarray:
    """``out[i] = image[i - shift]`` along `axis`, linear interpolation, `fill` outside."""
    if abs(shift) < 1e-6:
        return image
    base = math.floor(-shift)
    frac = -shift - base
    lower = _offset_copy(image, base, axis, fill)
    if frac < 1e-6:
        return lower
    # (1 - frac) * lower + frac * upper, in place: the same float32 operations, in the
    # same order, as the expression, without its temporaries.
    np.multiply(lower, 1.0 - frac, out=lower)
    lower += frac * _offset_copy(image, base + 1, axis, fill)
    return lower


def _offset_copy(image: np.ndarray, offset: int, axis: int, fill: float) -> np.ndarray:
    """``out[i] = image[i + offset]`` along `axis` (2D), `fill` where that is outside."""
    n = image.shape[axis]
    out = np.empty_like(image)
    start, stop = min(max(-offset, 0), n), min(max(n - offset, 0), n)
    target = out if axis == 0 else out.T
    source = image if axis == 0 else image.T
    target[:start] = fill
    target[stop:] = fill
    if start < stop:
        target[start:stop] = source[start + offset:stop + offset]
    return out


def regular_offsets(offsets: np.ndarray, step: float) -> np.ndarray:
    """A regular grid from the first to the last offset with a step close to `step`."""
    span = float(offsets[-1] - offsets[0])
    count = max(int(round(span / step)), 1) + 1
    return offsets[0] + np.arange(count) * (span / (count - 1))


def resample_slices(stack: np.ndarray, offsets: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linearly interpolate a sorted stack from `offsets` onto `targets` along the normal."""
    lower = np.clip(np.searchsorted(offsets, targets, side="right") - 1, 0, offsets.size - 2)
    weight = (targets - offsets[lower]) / (offsets[lower + 1] - offsets[lower])
    weight = np.clip(weight, 0.0, 1.0).astype(np.float32)
    out = np.empty((targets.size, *stack.shape[1:]), dtype=np.float32)
    for k, (i, w) in enumerate(zip(lower, weight, strict=True)):
        np.multiply(stack[i], 1.0 - w, out=out[k])
        out[k] += w * stack[i + 1]
    return out


def build_affine(
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    origin: np.ndarray,
    slice_step: float,
) -> np.ndarray:
    """The voxel (column, row, slice) -> LPS affine of a sorted, orthogonal stack.

    Column 0 is the row direction times the column spacing (PixelSpacing[1]), column 1
    the column direction times the row spacing (PixelSpacing[0]), column 2 the normal
    times the slice step.
    """
    row, col, normal = unit_axes(orientation)
    affine = np.eye(4)
    affine[:3, 0] = row * pixel_spacing[1]
    affine[:3, 1] = col * pixel_spacing[0]
    affine[:3, 2] = normal * slice_step
    affine[:3, 3] = origin
    return affine


def median_of(values: np.ndarray) -> float:
    """``np.median`` of a non-empty 1-D array (NaN when a value is NaN), computed alike.

    ``np.median`` imports ``numpy.ma`` on its first call, about 13 ms that every loading
    process would pay for the median of a few hundred slice steps.

    Example:
        >>> median_of(np.array([3.0, 1.0, 2.0, 10.0]))
        2.5
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64), axis=None)
    if np.isnan(ordered[-1]):  # np.sort puts NaN last
        return math.nan
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)
