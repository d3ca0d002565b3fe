"""Irregularly spaced slices are interpolated once, by preprocessing, not by the loader too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.dicom.loader_factory import SeriesRecipe, phantom_hu, write_series
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.loader import load_series
from triage.preprocess.align import slice_weights
from triage.preprocess.config import PreprocessConfig
from triage.preprocess.pipeline import preprocess

OFFSETS = tuple(np.cumsum([0.0] + [2.4, 2.6] * 7 + [2.5]))
# A window wide enough that the linear phantom is never clipped: normalization stays linear.
WIDE = {"ct_window": (-4000.0, 4000.0), "target_shape": (24, 24, 16)}


def test_the_loader_keeps_irregular_slices_with_their_positions(tmp_path: Path) -> None:
    series = write_series(tmp_path, SeriesRecipe(offsets=OFFSETS))
    kept = load_series(series.paths, keep_irregular=True)
    resampled = load_series(series.paths)
    assert kept.verdict is resampled.verdict is GeometryVerdict.RESAMPLED_IRREGULAR
    np.testing.assert_allclose(kept.slice_positions, np.asarray(OFFSETS) - OFFSETS[0])
    assert kept.shape[2] == len(OFFSETS) and resampled.slice_positions is None
    assert kept.spacing[2] == pytest.approx(2.5)  # the nominal grid: the median step
    assert "interpolated once" in kept.warnings[0]


@pytest.mark.parametrize("orientation", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                                         (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)])  # normal to feet
@pytest.mark.parametrize("spacing", [(2.0, 2.0, 3.0), (2.0, 2.0, 6.0)])  # linear; Gaussian
def test_one_interpolation_gives_the_regular_series_result(tmp_path: Path, spacing,
                                                           orientation) -> None:
    """The same linear phantom, irregular (kept) and regular over the same span, prepare
    to the same array: once straight from the slices equals the regular path (with a
    Gaussian, away from the ends, where either truncates its kernel its own way)."""
    span = OFFSETS[-1] - OFFSETS[0]
    recipe = SeriesRecipe(orientation=orientation)
    irregular = load_series(write_series(tmp_path / "a", recipe.with_(offsets=OFFSETS)).paths,
                            keep_irregular=True)
    regular = load_series(write_series(tmp_path / "b", recipe.with_(
        offsets=tuple(np.linspace(0.0, span, 16)))).paths)
    config = PreprocessConfig(target_spacing=spacing, **WIDE)
    got, expected = preprocess(irregular, config), preprocess(regular, config)
    np.testing.assert_allclose(got.affine, expected.affine, atol=1e-6)
    scale = 1.0 / 8000.0  # normalized units per HU
    filled = np.flatnonzero(expected.array[12, 12] > 0)
    trim = 0 if spacing[2] == 3.0 else 2  # the Gaussian's reach (4 sigma) at each end
    z = slice(filled[0] + trim, filled[-1] + 1 - trim)
    assert z.stop - z.start >= 3
    np.testing.assert_allclose(got.array[:, :, z], expected.array[:, :, z], rtol=0,
                               atol=0.6 * scale)
    assert got.array.std() > 100 * scale  # the phantom, not padding


def test_slice_weights_interpolate_linear_data_exactly() -> None:
    positions = np.asarray(OFFSETS) - OFFSETS[0]
    samples = np.arange(0.0, positions[-1], 3.0)
    for config in (PreprocessConfig(), PreprocessConfig(anti_aliasing=False)):
        weights = slice_weights(positions, samples, 3.0, config)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
        interior = (samples > 6) & (samples < positions[-1] - 6)
        np.testing.assert_allclose((weights @ (2.0 * positions + 1))[interior],
                                   (2.0 * samples + 1)[interior], atol=1e-4)
    nearest = slice_weights(positions, samples, 3.0, PreprocessConfig(interpolation="nearest"))
    assert set(np.unique(nearest)) == {0.0, 1.0}
    assert phantom_hu is not None
