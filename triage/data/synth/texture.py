"""Smooth tissue texture: filtered noise on a lattice in patient coordinates.

The lattice is fixed to the patient, not to a series, so a thin and a thick reconstruction
of one study show the same parenchymal texture. Amplitude depends on the tissue: none in
air, `amplitude_hu` in fat and soft tissue, more in bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_LATTICE_MM = 3.0
_CORRELATION_MM = 4.5


@dataclass(frozen=True, eq=False)
class TextureField:
    """Unit-variance smooth noise sampled on a regular LPS lattice.

    Attributes:
        field: lattice values indexed ``[x, y, z]``.
        origin: LPS position of lattice point (0, 0, 0).
        spacing_mm: lattice spacing.
    """

    field: np.ndarray
    origin: np.ndarray
    spacing_mm: float

    @classmethod
    def random(cls, rng: np.random.Generator, low: np.ndarray, high: np.ndarray,
               ) -> TextureField:
        """A field covering the LPS box ``[low, high]`` (with a margin)."""
        low = np.asarray(low, dtype=np.float64) - 2 * _LATTICE_MM
        high = np.asarray(high, dtype=np.float64) + 2 * _LATTICE_MM
        shape = tuple(int(np.ceil(v)) + 1 for v in (high - low) / _LATTICE_MM)
        noise = rng.standard_normal(shape, dtype=np.float32)
        smooth = ndimage.gaussian_filter(noise, _CORRELATION_MM / _LATTICE_MM, mode="wrap")
        smooth /= max(float(smooth.std()), 1e-6)
        return cls(smooth, low, _LATTICE_MM)

    def sample(self, points: np.ndarray) -> np.ndarray:
        """Trilinear samples at LPS `points` (..., 3); outside the lattice it clamps."""
        pts = np.asarray(points, dtype=np.float64)
        idx = ((pts - self.origin) / self.spacing_mm).reshape(-1, 3).T
        values = ndimage.map_coordinates(self.field, idx, order=1, mode="nearest")
        return values.reshape(pts.shape[:-1]).astype(np.float32)


def texture_amplitude(hu: np.ndarray, amplitude_hu: float) -> np.ndarray:
    """Per-voxel texture amplitude: 0 in air, `amplitude_hu` in tissue, 4x in bone."""
    amp = np.where(hu > -300.0, np.float32(amplitude_hu), np.float32(0.0))
    return np.where(hu > 250.0, np.float32(4.0 * amplitude_hu), amp).astype(np.float32)
