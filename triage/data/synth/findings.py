"""The label: small low-contrast liver lesions, and benign distractors that are not lesions.

A positive study carries one to `max_lesions` hypodense lesions (default 6-15 mm across,
-25 HU relative to the liver, soft margin). Distractors are independent of the label (so
they are no shortcut): a tiny bright calcification or an enhancing vessel segment, both
brighter than the liver and so different from the lesions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from triage.data.synth.geometry import SeriesGeometry
from triage.data.synth.shapes import Ellipsoid, rotation

_MAX_TRIES = 2000
_LESION_DEPTH_Q = 0.55  # lesion centres lie well inside the liver (normalized radius^2)


class DistractorKind(StrEnum):
    """Benign look-alikes that a classifier must not call a finding."""

    CALCIFICATION = "calcification"
    VESSEL = "vessel"


@dataclass(frozen=True)
class Lesion:
    """One hypodense liver lesion (the finding).

    Attributes:
        center: LPS centre, mm.
        diameter_mm: mean diameter.
        contrast_hu: HU relative to the surrounding liver (negative: darker).
        semi_axes: the ellipsoid's semi-axes, mm.
        yaw_deg, pitch_deg: orientation.
    """

    center: tuple[float, float, float]
    diameter_mm: float
    contrast_hu: float
    semi_axes: tuple[float, float, float]
    yaw_deg: float
    pitch_deg: float

    def shape(self, liver_hu: float) -> Ellipsoid:
        """The ellipsoid painted over the liver; its margin ramps over 1.5 mm."""
        return Ellipsoid(self.center, self.semi_axes, liver_hu + self.contrast_hu,
                         rotation(self.yaw_deg, self.pitch_deg), edge_mm=1.5, name="lesion")


@dataclass(frozen=True)
class Distractor:
    """A benign structure in the liver that is not a finding."""

    kind: DistractorKind
    center: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    value_hu: float
    yaw_deg: float
    pitch_deg: float

    def shape(self) -> Ellipsoid:
        return Ellipsoid(self.center, self.semi_axes, self.value_hu,
                         rotation(self.yaw_deg, self.pitch_deg), edge_mm=0.75,
                         name=self.kind.value)


def _point_in(liver: Ellipsoid, rng: np.random.Generator, depth_q: float) -> np.ndarray:
    """A uniform random point with normalized radius^2 below `depth_q` inside `liver`."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    radius = math.sqrt(depth_q) * rng.uniform() ** (1.0 / 3.0)
    local = direction * radius * np.asarray(liver.semi_axes)
    return np.asarray(liver.center) + np.asarray(liver.rotation) @ local


def _placeable(point: np.ndarray, radius: float, series: Sequence[SeriesGeometry],
               occluders: Sequence[Ellipsoid], taken: Sequence[tuple[np.ndarray, float]],
               ) -> bool:
    for geometry in series:
        slab = float(np.ptp(geometry.positions @ geometry.normal))
        if not geometry.covers(point, min(radius, 0.4 * slab)):
            return False
    if any(float(o.q(point)) < 1.5 for o in occluders):
        return False
    return all(np.linalg.norm(point - c) > r + radius + 3.0 for c, r in taken)


def sample_lesions(
    rng: np.random.Generator,
    *,
    count: int,
    liver: Ellipsoid,
    series: Sequence[SeriesGeometry],
    occluders: Sequence[Ellipsoid],
    diameter_mm: tuple[float, float],
    contrast_hu: float,
) -> tuple[Lesion, ...]:
    """Place `count` non-overlapping lesions inside the liver and inside every series.

    Raises:
        ValueError: if no valid position is found (the series cover too little liver).
    """
    lesions: list[Lesion] = []
    taken: list[tuple[np.ndarray, float]] = []
    for _ in range(count):
        diameter = float(rng.uniform(*diameter_mm))
        axes = tuple(float(diameter / 2.0 * s) for s in rng.uniform(0.85, 1.15, size=3))
        contrast = float(contrast_hu * rng.uniform(0.8, 1.2))
        yaw, pitch = float(rng.uniform(0, 180)), float(rng.uniform(-30, 30))
        for _try in range(_MAX_TRIES):
            point = _point_in(liver, rng, _LESION_DEPTH_Q)
            if _placeable(point, max(axes), series, occluders, taken):
                break
        else:
            raise ValueError("Could not place a lesion inside the liver within the imaged "
                             "slab; increase the number of slices.")
        center = tuple(round(float(v), 2) for v in point)
        lesions.append(Lesion(center, round(diameter, 2), round(contrast, 2), axes, yaw, pitch))
        taken.append((point, max(axes)))
    return tuple(lesions)


def sample_distractor(
    rng: np.random.Generator,
    *,
    liver: Ellipsoid,
    liver_hu: float,
    series: Sequence[SeriesGeometry],
    occluders: Sequence[Ellipsoid],
) -> Distractor:
    """One calcification (2-3 mm, 300-500 HU) or vessel segment (4-6 mm x 30-50 mm)."""
    kind = DistractorKind.CALCIFICATION if rng.uniform() < 0.5 else DistractorKind.VESSEL
    if kind is DistractorKind.CALCIFICATION:
        r = float(rng.uniform(1.0, 1.5))
        axes, value = (r, r, r), float(rng.uniform(300.0, 500.0))
    else:
        r = float(rng.uniform(2.0, 3.0))
        axes, value = (float(rng.uniform(15.0, 25.0)), r, r), liver_hu + float(rng.uniform(50, 90))
    yaw, pitch = float(rng.uniform(0, 180)), float(rng.uniform(-40, 40))
    point = np.asarray(liver.center, dtype=np.float64)
    for _try in range(_MAX_TRIES):
        point = _point_in(liver, rng, 0.6)
        if _placeable(point, min(axes), series, occluders, ()):
            break
    center = tuple(round(float(v), 2) for v in point)
    return Distractor(kind, center, axes, round(value, 1), yaw, pitch)


def lesion_mask(geometry: SeriesGeometry, lesions: Sequence[Lesion]) -> np.ndarray:
    """Boolean mask ``[slice, row, column]`` of voxels whose centre lies inside a lesion."""
    mask = np.zeros((geometry.n_slices, geometry.rows, geometry.columns), dtype=bool)
    r = np.arange(geometry.rows)[:, None]
    c = np.arange(geometry.columns)[None, :]
    for lesion in lesions:
        shape = lesion.shape(0.0)
        for k in range(geometry.n_slices):
            mask[k] |= shape.q(geometry.pixel_to_lps(k, r, c)) <= 1.0
    return mask
