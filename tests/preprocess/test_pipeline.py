"""Tests of `preprocess()`: normalize + align of a `Volume` into a `PreparedVolume`."""

from __future__ import annotations

import numpy as np
import pytest

from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.model import Volume
from triage.preprocess.config import PreprocessConfig
from triage.preprocess.normalize import UnsupportedModalityError
from triage.preprocess.pipeline import PREPROCESS_VERSION, preprocess

CONFIG = PreprocessConfig(target_spacing=(4.0, 4.0, 5.0), target_shape=(40, 40, 16))


def make_ct(shape=(96, 96, 40), spacing=(2.0, 2.0, 2.5), seed=0, **kwargs) -> Volume:
    """Axial supine CT: air around an elliptic 40 HU body with noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]),
                       indexing="ij")
    body = ((x / 0.8) ** 2 + (y / 0.6) ** 2 < 1)[:, :, None]
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0.0, 10.0, shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-96.0, -96.0, 0.0]
    kwargs.setdefault("provenance", {"study_uid": "1.2.3", "series_uid": "1.2.3.4",
                                     "device_group": "acme-ct1"})
    return Volume(hu.astype(np.float32), affine, **kwargs)


def test_ct_volume_is_prepared():
    volume = make_ct(verdict=GeometryVerdict.RESAMPLED_IRREGULAR,
                     warnings=["irregular spacing resampled"])
    before = volume.array.copy()
    prepared = preprocess(volume, CONFIG)
    assert prepared.shape == CONFIG.target_shape
    assert prepared.array.dtype == np.float32
    assert prepared.spacing == pytest.approx(CONFIG.target_spacing)
    assert prepared.modality == "CT"
    assert prepared.verdict is GeometryVerdict.RESAMPLED_IRREGULAR
    assert prepared.warnings == ["irregular spacing resampled"]
    assert prepared.provenance == volume.provenance
    assert prepared.provenance is not volume.provenance
    assert prepared.source_shape == (96, 96, 40)
    assert prepared.source_spacing == pytest.approx((2.0, 2.0, 2.5))
    assert prepared.steps["config_fingerprint"] == CONFIG.fingerprint()
    assert prepared.steps["preprocess_version"] == PREPROCESS_VERSION
    assert prepared.steps["source_axcodes"] == "LPS"
    assert prepared.steps["pad_value"] == 0.0
    np.testing.assert_array_equal(volume.array, before)
    # Air is 0, the body ~ (40 + 200) / 500 after the default window.
    assert prepared.array[0, 0, 0] == 0.0
    assert prepared.array[20, 20, 8] == pytest.approx(0.48, abs=0.02)


def test_mr_volume_is_padded_with_its_normalized_air():
    rng = np.random.default_rng(1)
    array = rng.rayleigh(5.0, (40, 40, 12)).astype(np.float32)
    array[8:32, 8:32] = rng.normal(400.0, 40.0, (24, 24, 12))
    prepared = preprocess(Volume(array, np.diag([2.0, 2.0, 3.0, 1.0]), modality="MR"),
                          CONFIG)
    pad = prepared.steps["pad_value"]
    assert pad < -1.0
    assert prepared.array[0, 0, 0] == pytest.approx(pad)
    assert prepared.array.min() == pytest.approx(pad)


def test_long_scan_is_cropped_with_a_warning():
    prepared = preprocess(make_ct(shape=(64, 64, 80), spacing=(3.0, 3.0, 5.0)), CONFIG)
    assert prepared.steps["cropped_mm"] == [32.0, 32.0, 320.0]
    assert prepared.warnings == [
        "The target box keeps only 80 of 400 mm of the scan along S; raise target_shape "
        "or target_spacing to cover more of it."]


def test_unsupported_modality():
    with pytest.raises(UnsupportedModalityError, match=r"modality 'PT'"):
        preprocess(make_ct(modality="PT"), CONFIG)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_mapping_after_alignment_equals_normalizing_first(modality):
    """The pipeline clips, aligns, then maps (fewer voxels); normalizing the whole volume
    first and aligning that gives the same array up to float32 rounding, and air maps to
    exactly the background value either way (MR here: a z-score range of ~100)."""
    from triage.preprocess.align import align
    from triage.preprocess.normalize import normalize

    volume = make_ct(seed=3)
    if modality == "MR":
        volume = Volume(volume.array + 1000.0, volume.affine, modality="MR")
    normalized = normalize(volume.array, modality, CONFIG)
    expected = align(normalized.array, volume.ras_affine, CONFIG,
                     pad_value=normalized.background).array
    prepared = preprocess(volume, CONFIG)
    # float32 rounding of the interpolation, relative to the range of the values
    np.testing.assert_allclose(prepared.array, expected, rtol=0,
                               atol=1e-6 * max(1.0, float(np.ptp(expected))))
    assert prepared.array.min() >= np.float32(normalized.background)
    if modality == "CT":  # air is below the window: exactly 0, as before
        assert prepared.array.min() == 0.0 == normalized.background
    assert prepared.steps["pad_value"] == pytest.approx(normalized.background)


def test_consume_clips_the_volume_in_place_and_prepares_the_same_array():
    kept, consumed = make_ct(seed=4), make_ct(seed=4)
    before = kept.array.copy()
    expected = preprocess(kept, CONFIG).array
    np.testing.assert_array_equal(kept.array, before)  # not consumed: untouched
    np.testing.assert_array_equal(preprocess(consumed, CONFIG, consume=True).array, expected)
    np.testing.assert_array_equal(consumed.array, np.clip(before, *CONFIG.ct_window))
