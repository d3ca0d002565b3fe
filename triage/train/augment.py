"""Generic spatial / intensity augmentation of training volumes (``augment`` config section).

Device-grouped perturbation (`triage.train.perturb`) changes how a scanner renders a study;
this module changes *where* things are and mildly how bright they are, so that a network
trained on a few hundred volumes cannot key on the exact position of organs or slab edges:

- a flip of each listed axis with probability ``p_flip`` (the lesion label does not depend
  on side or orientation);
- a random integer shift of up to ``max_shift`` voxels per axis, filled with ``fill`` (the
  window floor, i.e. the padding value of cached volumes);
- with probability ``p_intensity`` an affine intensity jitter ``a * x + b``, ``a`` in
  ``1 ± intensity_scale``, ``b`` in ``± intensity_shift``.

Every draw comes from the per-item generator the dataset passes in, so an epoch is
reproducible whatever the number of DataLoader workers (docs/training.md). The operations
are plain NumPy array views and copies (MONAI's RandFlip / RandAffine would resample or
need their own random state; integer shifts and flips are exact and cheaper on CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.train.config import AugmentConfig


class Augmentation:
    """``augment(array, sample, rng) -> (array, None)`` for `CachedVolumeDataset.transform`."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(self, array: np.ndarray, sample: Any, rng: np.random.Generator
                 ) -> tuple[np.ndarray, None]:
        cfg = self.config
        if not cfg.enabled:
            return array, None
        flips = rng.uniform(size=3) < cfg.p_flip
        axes = tuple(ax for ax in cfg.flip_axes if flips[ax])
        if axes:
            array = np.flip(array, axis=axes)
        shifts = [int(rng.integers(-m, m + 1)) if m > 0 else 0 for m in cfg.max_shift]
        if any(shifts):
            array = shift(array, shifts, cfg.fill)
        if rng.uniform() < cfg.p_intensity:
            scale = 1.0 + rng.uniform(-cfg.intensity_scale, cfg.intensity_scale)
            offset = rng.uniform(-cfg.intensity_shift, cfg.intensity_shift)
            array = array * np.float32(scale) + np.float32(offset)
        return np.ascontiguousarray(array, dtype=np.float32), None


def shift(array: np.ndarray, shifts: list[int], fill: float) -> np.ndarray:
    """`array` moved by integer `shifts` per axis (not wrapped), uncovered voxels = `fill`."""
    out = np.full_like(array, fill)
    src, dst = [], []
    for n, s in zip(array.shape, shifts, strict=True):
        s = max(-n, min(n, s))
        src.append(slice(max(0, -s), n - max(0, s)))
        dst.append(slice(max(0, s), n - max(0, -s)))
    out[tuple(dst)] = array[tuple(src)]
    return out


@dataclass(frozen=True)
class ComposedInfo:
    """The infos of composed transforms merged: the last ``target_device`` any reported
    (the device perturbation's), and the sum of the ``operators`` counts any reported
    (layered augmentation's), or None."""

    target_device: str | None
    operators: np.ndarray | None


def compose(*transforms: Callable | None) -> Callable | None:
    """Apply `transforms` in order; their infos are merged into a `ComposedInfo`. None
    when no transform is given."""
    active = [t for t in transforms if t is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def composed(array: np.ndarray, sample: Any, rng: np.random.Generator
                 ) -> tuple[np.ndarray, Any]:
        target, operators = None, None
        for transform in active:
            array, step_info = transform(array, sample, rng)
            target = getattr(step_info, "target_device", None) or target
            counts = getattr(step_info, "operators", None)
            if counts is not None:
                operators = counts if operators is None else operators + counts
        return array, ComposedInfo(target, operators)

    return composed
