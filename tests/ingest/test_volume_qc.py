"""Volume QC measurements: matrix, intensity spread and body fraction of the native volume."""

from __future__ import annotations

import math

import numpy as np

from triage.dicom.volume.model import Volume
from triage.ingest.volume_qc import VolumeQC, _std_float64, measure_volume
from triage.preprocess.stats import sample_slices


def test_a_body_phantom_a_blank_and_a_one_column_volume():
    array = np.full((64, 64, 20), -1000.0, np.float32)
    array[16:48, 16:48] = 40.0  # a square "body": a quarter of each slice
    qc = measure_volume(Volume(array, np.eye(4), "CT"))
    assert qc.matrix == (64, 64, 20)
    assert qc.body_fraction == 0.25 and math.isclose(qc.intensity_std, 450.333, rel_tol=1e-4)
    blank = measure_volume(Volume(np.full((64, 64, 20), -1024, np.float32), np.eye(4), "CT"))
    assert (blank.intensity_std, blank.body_fraction) == (0.0, 0.0)
    assert measure_volume(Volume(array[:1], np.eye(4), "CT")).matrix == (1, 64, 20)
    assert measure_volume(Volume(array, np.eye(4), "MR")).body_fraction is None


def test_the_sample_the_statistics_take_gives_the_same_measurements():
    rng = np.random.default_rng(3)
    array = rng.normal(-300.0, 400.0, (40, 36, 50)).astype(np.float32)
    volume = Volume(array, np.eye(4), "CT")
    assert measure_volume(volume, sample_slices(array)) == measure_volume(volume)


def test_round_trip_and_malformed_records():
    array = np.zeros((8, 8, 2), np.float32)
    array[0, 0, 0] = np.nan
    qc = measure_volume(Volume(array, np.eye(4), "CT"))
    assert math.isnan(qc.intensity_std)
    back = VolumeQC.from_dict(qc.to_dict())
    assert back.matrix == qc.matrix and math.isnan(back.intensity_std)
    assert VolumeQC.from_dict(None) is None
    assert VolumeQC.from_dict({"matrix": [1, 2]}) is None
    assert VolumeQC.from_dict({"matrix": [1, 2], "intensity_std": 1, "body_fraction": 0}) is None


def test_the_intensity_spread_is_numpy_std_bit_for_bit():
    rng = np.random.default_rng(4)
    for shape in [(256, 256, 16), (320, 320, 16), (97, 131, 16), (33, 17, 5), (1, 1, 1),
                  (3, 70001, 1)]:
        for order in "FC":
            sample = np.asarray(rng.normal(-300.0, 500.0, shape), np.float32, order=order)
            assert _std_float64(sample) == float(sample.std(dtype=np.float64))
            rounded = np.round(sample * 7.3)  # other magnitudes, whole numbers
            assert _std_float64(rounded) == float(rounded.std(dtype=np.float64))
    strided = rng.normal(0.0, 1.0, (40, 40, 8)).astype(np.float32)[::2]
    assert _std_float64(strided) == float(strided.std(dtype=np.float64))
    assert math.isnan(_std_float64(np.array([[[1.0, np.nan]]], np.float32)))
