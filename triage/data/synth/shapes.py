"""Analytic ellipsoids painted onto arbitrary image planes: the phantom's only primitive.

A shape is defined in patient coordinates (LPS, mm), so every series of a study, whatever
its orientation, spacing, tilt or gaps, samples the same anatomy. An infinite semi-axis
makes an elliptic cylinder (the body outline, the table). Painting only touches the pixel
window where the shape's bounding box meets the plane, which keeps rendering fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

IDENTITY: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                                                    (0.0, 0.0, 1.0))


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
             ) -> tuple[tuple[float, float, float], ...]:
    """Rotation matrix (rows) ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``; columns are the local axes."""
    a, b, c = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    m = rz @ ry @ rx
    return tuple(tuple(float(v) for v in row) for row in m)


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid of constant value with a soft edge.

    Attributes:
        center: LPS centre in mm.
        semi_axes: semi-axes in mm along the local axes; ``math.inf`` for a cylinder.
        value: HU painted inside (blended over what is below at the soft edge).
        rotation: 3x3 matrix (rows) whose columns are the local axes in LPS.
        edge_mm: width of the linear edge ramp; 0 for a hard edge.
        name: label for debugging and ground truth.
    """

    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    value: float
    rotation: tuple[tuple[float, float, float], ...] = IDENTITY
    edge_mm: float = 1.0
    name: str = ""
    _inv: np.ndarray = field(init=False, repr=False, compare=False)
    _half: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(not a > 0 for a in self.semi_axes):
            raise ValueError(f"Ellipsoid '{self.name}': semi_axes must be positive, "
                             f"got {self.semi_axes}.")
        # Rows of the inverse rotation scaled by 1/a: local normalized coordinates.
        rot = np.asarray(self.rotation, dtype=np.float64)
        inv = rot.T / np.asarray(self.semi_axes, dtype=np.float64)[:, None]
        object.__setattr__(self, "_inv", inv)
        object.__setattr__(self, "_half", self._bounding_half_extent())

    @property
    def min_semi_axis(self) -> float:
        return min(a for a in self.semi_axes if math.isfinite(a))

    def half_extent(self) -> np.ndarray:
        """Half size of the axis-aligned bounding box along x, y, z (may be inf)."""
        return self._half

    def _bounding_half_extent(self) -> np.ndarray:
        rot = np.asarray(self.rotation, dtype=np.float64)
        out = np.zeros(3)
        for j in range(3):
            total = 0.0
            for i, a in enumerate(self.semi_axes):
                if rot[j, i] == 0.0:
                    continue
                if not math.isfinite(a):
                    total = math.inf
                    break
                total += (rot[j, i] * a) ** 2
            out[j] = math.sqrt(total)
        return out + self.edge_mm

    def q(self, points: np.ndarray) -> np.ndarray:
        """Normalized squared radius of `points` (..., 3): < 1 inside, > 1 outside."""
        local = (np.asarray(points, dtype=np.float64) - self.center) @ self._inv.T
        return np.sum(local**2, axis=-1)


def _span(direction: np.ndarray, half: np.ndarray) -> float:
    """Largest |(p - center) . direction| over the bounding box, treating 0 * inf as 0."""
    nonzero = direction != 0.0
    return float(np.sum(np.abs(direction[nonzero]) * half[nonzero]))


@dataclass(frozen=True, eq=False)
class PlaneStack:
    """Parallel image planes sharing a pixel grid: ``origins[k] + c*step_c + r*step_r``."""

    origins: np.ndarray
    step_c: np.ndarray
    step_r: np.ndarray
    normal: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = np.cross(self.step_c, self.step_r)
        object.__setattr__(self, "normal", n / np.linalg.norm(n))


def _window(rel: np.ndarray, step: np.ndarray, half: np.ndarray, size: int,
            ) -> tuple[int, int]:
    """Index range along `step` where the box around ``origin + rel`` can be seen."""
    length = float(np.linalg.norm(step))
    unit = step / length
    reach = _span(unit, half) / length
    if not math.isfinite(reach):
        return 0, size
    mids = rel @ unit / length
    return max(0, math.floor(float(mids.min()) - reach)), min(
        size, math.ceil(float(mids.max()) + reach) + 1)


def paint(volume: np.ndarray, shape: Ellipsoid, planes: PlaneStack) -> None:
    """Blend `shape` into `volume` (planes, rows, cols), only where its bounding box reaches."""
    n_planes, rows, cols = volume.shape
    half = shape.half_extent()
    center = np.asarray(shape.center)
    rel = center - planes.origins
    normal = planes.normal
    hits = np.nonzero(np.abs(rel @ normal) <= _span(normal, half))[0]
    if hits.size == 0:
        return
    k0, k1 = int(hits[0]), int(hits[-1]) + 1
    r0, r1 = _window(rel[k0:k1], planes.step_r, half, rows)
    c0, c1 = _window(rel[k0:k1], planes.step_c, half, cols)
    if r0 >= r1 or c0 >= c1:
        return
    finite = [i for i, a in enumerate(shape.semi_axes) if math.isfinite(a)]
    inv = shape._inv[finite]
    base = ((planes.origins[k0:k1] - center) @ inv.T).astype(np.float32)
    alpha = (inv @ planes.step_c).astype(np.float32)
    beta = (inv @ planes.step_r).astype(np.float32)
    r = np.arange(r0, r1, dtype=np.float32)
    c = np.arange(c0, c1, dtype=np.float32)
    q = np.zeros((k1 - k0, r1 - r0, c1 - c0), dtype=np.float32)
    for i in range(len(finite)):
        term = (base[:, i, None, None] + beta[i] * r[None, :, None]) + alpha[i] * c[None, None, :]
        np.square(term, out=term)
        q += term
    target = volume[k0:k1, r0:r1, c0:c1]
    if shape.edge_mm > 0:
        ramp = np.float32(shape.min_semi_axis / (2.0 * shape.edge_mm))
        np.subtract(np.float32(1.0), q, out=q)
        q *= ramp
        q += np.float32(0.5)
        np.clip(q, 0.0, 1.0, out=q)
        delta = np.float32(shape.value) - target
        delta *= q
        target += delta
    else:
        target[q <= 1.0] = shape.value


def render_planes(shapes: Sequence[Ellipsoid], planes: PlaneStack, size: tuple[int, int],
                  background: float = -1000.0) -> np.ndarray:
    """Paint `shapes` in order onto (planes, rows, cols) float32 filled with `background`."""
    volume = np.full((len(planes.origins), *size), background, dtype=np.float32)
    for shape in shapes:
        paint(volume, shape, planes)
    return volume
