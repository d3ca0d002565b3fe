"""Tests of the normalizer registry, CT windowing and MR z-scoring."""

from __future__ import annotations

import numpy as np
import pytest

from triage.preprocess.config import PreprocessConfig
from triage.preprocess.normalize import (
    CTWindowNormalizer,
    MRZScoreNormalizer,
    NormalizationError,
    UnsupportedModalityError,
    create_normalizer,
    list_normalizers,
    normalize,
    normalizer_for,
)


def make_mr(seed: int = 0, shape: tuple[int, int, int] = (64, 64, 24)) -> np.ndarray:
    """MR-like magnitude volume: Rayleigh background, two tissues, a few bright spikes."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]),
                       indexing="ij")
    body = ((x / 0.8) ** 2 + (y / 0.6) ** 2 < 1)[:, :, None].repeat(shape[2], axis=2)
    organ = ((x - 0.2) ** 2 + y ** 2 < 0.1)[:, :, None].repeat(shape[2], axis=2)
    array = rng.rayleigh(8.0, shape)
    array[body] = rng.normal(300.0, 25.0, body.sum())
    array[organ] = rng.normal(600.0, 30.0, organ.sum())
    array.flat[rng.choice(array.size, 20, replace=False)] = 20000.0  # spikes
    return array.astype(np.float32)


def test_ct_window_is_exact_on_known_values():
    hu = np.array([-1000, -200, -100, 50, 300, 3000], np.float32).reshape(1, 2, 3)
    before = hu.copy()
    out = normalize(hu, "CT", PreprocessConfig())
    np.testing.assert_array_equal(out.array.ravel(),
                                  np.array([0.0, 0.0, 0.2, 0.5, 1.0, 1.0], np.float32))
    assert out.array.dtype == np.float32 and out.background == 0.0
    assert out.params == {"name": "ct-window", "window": [-200.0, 300.0]}
    np.testing.assert_array_equal(hu, before)  # input untouched


def test_ct_window_from_config_and_integer_input():
    config = PreprocessConfig(ct_window=(-160, 240))
    out = normalizer_for("CT", config)(np.array([[[-160, 40, 240]]], np.int16))
    np.testing.assert_allclose(out.array.ravel(), [0.0, 0.5, 1.0], atol=1e-7)
    assert out.array.dtype == np.float32


def test_mr_zscore_on_mr_like_volume():
    array = make_mr()
    out = normalize(array, "MR", PreprocessConfig())
    fg = array > array.mean()
    assert abs(out.array[fg].mean()) < 0.05
    assert abs(out.array[fg].std() - 1.0) < 0.05
    assert out.array.max() < 10.0  # spikes clipped at the 99.5th foreground percentile
    assert out.background == pytest.approx(out.array.min())  # air sits at the clip floor
    assert out.background < -1.0
    assert set(out.params) == {"name", "percentiles", "clip", "mean", "std"}


def test_mr_statistics_on_a_subsample_of_a_large_volume():
    array = make_mr(3, (128, 128, 80))  # > 1 M voxels: percentiles on a strided sample
    out = MRZScoreNormalizer()(array)
    fg = array > array.mean()
    assert abs(out.array[fg].mean()) < 0.05 and abs(out.array[fg].std() - 1.0) < 0.05


def test_mr_zscore_does_not_depend_on_intensity_scale():
    array = make_mr(1)
    a = MRZScoreNormalizer()(array).array
    b = MRZScoreNormalizer()(array * 7.5 + 100.0).array
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_mr_constant_volume_is_an_error():
    with pytest.raises(NormalizationError, match=r"no foreground \(constant intensity\)"):
        normalize(np.full((8, 8, 8), 5.0, np.float32), "MR", PreprocessConfig())


def test_unsupported_modality_names_it_and_the_supported_ones():
    with pytest.raises(UnsupportedModalityError,
                       match=r"No intensity normalizer for modality 'US'; supported "
                             r"modalities: CT, MR\."):
        normalizer_for("US", PreprocessConfig())


def test_unknown_normalizer_lists_valid_choices():
    with pytest.raises(ValueError, match=r"Unknown normalizer 'ct-windw'\. Did you mean "
                                         r"'ct-window'\? Valid normalizers: ct-window, "
                                         r"mr-zscore\."):
        create_normalizer("ct-windw")


def test_bad_normalizer_arguments():
    with pytest.raises(ValueError, match=r"Argument 'window' must be \(low, high\)"):
        CTWindowNormalizer(window=(100, -100))
    with pytest.raises(ValueError, match=r"Argument 'percentiles' must satisfy"):
        MRZScoreNormalizer(percentiles=(50, 40))


@pytest.mark.parametrize("name", list_normalizers())
def test_every_registered_normalizer_runs(name):
    array = make_mr(2, (16, 16, 8)) - 500.0
    out = create_normalizer(name)(array)
    assert out.array.shape == array.shape and out.array.dtype == np.float32
    assert np.isfinite(out.array).all() and np.isfinite(out.background)
