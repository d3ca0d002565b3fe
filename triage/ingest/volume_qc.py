"""Is a loaded series an image at all? Contrast, matrix and body fraction of the native volume.

A blank export (RescaleSlope 0: every voxel -1024 HU), a one-column image or a scan that is
almost all air gives the model nothing to judge, yet it still returns a probability, which
may fall below a certified routine threshold. Ingest measures these numbers on the native
volume (before resampling hides a tiny matrix) and the ``degenerate-volume`` rule
(`triage.route.kinds`) sends such studies to review.

The measurements use the same evenly spaced slices (up to 16) as the device statistics
(`triage.preprocess.stats`), so they cost a fraction of a millisecond per slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.dicom.volume.model import Volume
from triage.preprocess.stats import BODY_THRESHOLD_HU, sample_slices


@dataclass(frozen=True)
class VolumeQC:
    """What the ``degenerate-volume`` rule reads about one loaded series.

    Attributes:
        matrix: the native volume's shape (columns, rows, slices).
        intensity_std: standard deviation of the stored intensity (HU for CT) over the
            sampled slices; NaN when the array holds a non-finite value.
        body_fraction: fraction of the sampled voxels above -500 HU (inside the body), for
            CT only; None for other modalities (no absolute scale).
    """

    matrix: tuple[int, int, int]
    intensity_std: float
    body_fraction: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as None)."""
        std = self.intensity_std if math.isfinite(self.intensity_std) else None
        return {"matrix": list(self.matrix), "intensity_std": std,
                "body_fraction": self.body_fraction}

    @classmethod
    def from_dict(cls, data: Any) -> VolumeQC | None:
        """The measurements of `to_dict` output; None when `data` is missing or malformed."""
        try:
            matrix = tuple(int(n) for n in data["matrix"])
            std = data["intensity_std"]
            body = data["body_fraction"]
            if len(matrix) != 3:
                return None
            return cls(matrix, float("nan") if std is None else float(std),
                       None if body is None else float(body))
        except (KeyError, TypeError, ValueError):
            return None


def measure_volume(volume: Volume, sample: np.ndarray | None = None) -> VolumeQC:
    """Measure matrix, intensity spread and body fraction of a loaded series.

    Args:
        volume: the loaded series.
        sample: ``sample_slices(volume.array)``, when the caller has taken it already
            (ingest shares it with the device statistics).

    Example:
        >>> import numpy as np
        >>> blank = Volume(np.full((32, 32, 8), -1024, np.float32), np.eye(4), "CT")
        >>> qc = measure_volume(blank)
        >>> qc.matrix, qc.intensity_std, qc.body_fraction
        ((32, 32, 8), 0.0, 0.0)
    """
    if sample is None:
        sample = sample_slices(volume.array)
    if sample.size == 0:
        return VolumeQC(volume.shape, float("nan"), None)
    std = _std_float64(sample)
    body = None
    if volume.modality == "CT":
        body = float(np.count_nonzero(sample > BODY_THRESHOLD_HU) / sample.size)
    return VolumeQC(volume.shape, std, body)


#: Elements per block of `_std_float64`: 256 KiB of float64 deviations, kept in cache.
_STD_BLOCK = 1 << 15


def _std_float64(sample: np.ndarray) -> float:
    """``float(sample.std(dtype=np.float64))`` bit for bit, without its float64 copy.

    `np.std` writes the squared deviations of every voxel to a new float64 array (8 MiB
    for 16 slices of 256², three passes through memory) and sums it pairwise (numpy's
    ``pairwise_sum``: halves, each rounded down to a multiple of 8 elements, down to
    blocks of 128). The same halves are summed here, each block of up to `_STD_BLOCK`
    elements by numpy itself, so every addition happens in the same order on the same
    numbers (a test compares the two); the deviations stay in cache. Arrays that are not
    contiguous (numpy would sum them in another order) take `np.std`.
    """
    if not (sample.flags.f_contiguous or sample.flags.c_contiguous):
        return float(sample.std(dtype=np.float64))
    mean = np.add.reduce(sample, axis=None, dtype=np.float64, keepdims=True)
    np.true_divide(mean, sample.size, out=mean, casting="unsafe")
    total = _sum_of_squares(sample.ravel(order="K"), mean.reshape(()))
    return math.sqrt(total / sample.size)


def _sum_of_squares(flat: np.ndarray, mean: np.ndarray) -> float:
    """Pairwise sum of ``(flat - mean) ** 2`` in float64, split as numpy splits it."""
    n = flat.size
    if n <= _STD_BLOCK:
        deviation = np.subtract(flat, mean)  # float32 - float64: float64, as np.var
        np.multiply(deviation, deviation, out=deviation)
        return float(np.add.reduce(deviation, axis=None))
    half = n // 2
    half -= half % 8
    return _sum_of_squares(flat[:half], mean) + _sum_of_squares(flat[half:], mean)
