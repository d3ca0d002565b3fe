"""Tests of per-device intensity statistics: direction of each measure, merge, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from triage.dicom.volume.model import Volume
from triage.preprocess.normalize import UnsupportedModalityError
from triage.preprocess.stats import (
    EDGE_WIDTH_PER_SIGMA,
    LANDMARK_PERCENTILES,
    MAX_SLICES,
    NOISE_SLICES,
    DeviceStatsAccumulator,
    _quartiles,
    estimate_edge_width_mm,
    estimate_noise_hu,
    sample_slices,
)

SPACING = np.array([1.5, 1.5, 2.5])


def blur_in_plane(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma in voxels) along axes 0 and 1."""
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = torch.tensor(kernel / kernel.sum(), dtype=torch.float32)
    x = torch.from_numpy(array).permute(2, 0, 1)[:, None]  # (slices, 1, X, Y)
    x = torch.nn.functional.pad(x, (radius,) * 4, mode="replicate")
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1))
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
    return x[:, 0].permute(1, 2, 0).contiguous().numpy()


def make_ct(seed: int, offset: float = 0.0, noise: float = 10.0, blur: float = 0.0,
            shape=(128, 128, 12)) -> np.ndarray:
    """CT-like HU volume: air, a fat rim, soft tissue (40 HU) and an organ (60 HU)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]),
                       indexing="ij")
    r = (x / 0.8) ** 2 + (y / 0.6) ** 2
    hu = np.where(r < 1, -100.0, -1000.0)
    hu = np.where(r < 0.85, 40.0, hu)
    hu = np.where((x - 0.3) ** 2 / 0.09 + y ** 2 / 0.06 < 1, 60.0, hu)
    hu = np.repeat(hu[:, :, None], shape[2], axis=2).astype(np.float32)
    if blur:
        hu = blur_in_plane(hu, blur)
    hu += offset * (hu > -500)
    return (hu + rng.normal(0.0, noise, shape)).astype(np.float32)


DEVICES = {
    "base": {},
    "offset": {"offset": 40.0},
    "noisy": {"noise": 35.0},
    "soft": {"blur": 1.5},
}


@pytest.fixture(scope="module")
def devices() -> DeviceStatsAccumulator:
    acc = DeviceStatsAccumulator()
    for i, (group, kwargs) in enumerate(DEVICES.items()):
        for seed in range(2):
            acc.add_array(make_ct(10 * i + seed, **kwargs), SPACING, group)
    return acc


def test_hu_offset_moves_the_landmarks(devices):
    base, offset = devices.devices["base"], devices.devices["offset"]
    assert base.n_volumes == offset.n_volumes == 2
    shift = offset.landmarks() - base.landmarks()
    central = [LANDMARK_PERCENTILES.index(p) for p in (10, 25, 50, 75, 90)]
    assert shift[central] == pytest.approx([40.0] * len(central), abs=4.0)
    assert offset.mean == pytest.approx(base.mean + 40.0, abs=4.0)
    assert offset.std == pytest.approx(base.std, rel=0.05)


def test_noise_estimate_follows_the_noise(devices):
    assert np.median(devices.devices["base"].noise_hu) == pytest.approx(10.0, rel=0.15)
    assert np.median(devices.devices["noisy"].noise_hu) == pytest.approx(35.0, rel=0.15)
    assert devices.devices["noisy"].std > devices.devices["base"].std


def test_edge_width_follows_the_blur(devices):
    sharp = np.median(devices.devices["base"].edge_width_mm)
    soft = np.median(devices.devices["soft"].edge_width_mm)
    assert sharp < 2.0 * SPACING[0]
    # A Gaussian of sigma 1.5 voxels (2.25 mm), on top of the sampling's own width.
    assert soft == pytest.approx(np.hypot(EDGE_WIDTH_PER_SIGMA * 2.25, sharp), rel=0.15)
    summary = devices.summary()
    assert summary["soft"]["edge_width_mm"] == pytest.approx(soft)


def test_estimators_on_pure_noise_and_on_air():
    rng = np.random.default_rng(3)
    tissue = (50.0 + rng.normal(0.0, 20.0, (64, 64, 8))).astype(np.float32)
    assert estimate_noise_hu(tissue) == pytest.approx(20.0, rel=0.1)
    air = np.full((64, 64, 8), -1000.0, np.float32)
    assert estimate_noise_hu(air) is None
    assert estimate_edge_width_mm(air, SPACING) is None


def _noise_reference(array: np.ndarray) -> float | None:
    """The estimator written plainly (9 shifted views, a sum, a stacked min/max) on the
    `NOISE_SLICES` evenly spaced slices it measures."""
    n = array.shape[2]
    picked = np.unique(np.linspace(0, n - 1, min(n, NOISE_SLICES)).round().astype(int))
    s = array[:, :, picked].astype(np.float32)
    views = [s[i:s.shape[0] - 2 + i, j:s.shape[1] - 2 + j] for i in range(3) for j in range(3)]
    residual = sum(w * v for w, v in zip((1, -2, 1, -2, 4, -2, 1, -2, 1), views, strict=True))
    low, high = np.min(views, axis=0), np.max(views, axis=0)
    values = residual[(low >= -150.0) & (high <= 200.0)]
    if values.size < 500:
        return None
    return float(1.4826 * np.median(np.abs(values - np.median(values))) / 6.0)


def test_noise_estimate_is_bit_identical_to_the_plain_formula():
    rng = np.random.default_rng(5)
    volume = (40.0 + rng.normal(0.0, 25.0, (70, 60, 12))).astype(np.float32)
    volume[:15] = -1000.0  # air, and an edge the min/max must exclude
    volume[:, 50:] += 400.0
    assert estimate_noise_hu(volume) == _noise_reference(volume)


def test_json_round_trip_and_resume(devices, tmp_path):
    path = tmp_path / "device_stats.json"
    devices.to_json(path)
    data = json.loads(path.read_text())
    assert data["devices"]["noisy"]["summary"]["landmark_percentiles"] == list(
        LANDMARK_PERCENTILES)
    loaded = DeviceStatsAccumulator.from_json(path)
    assert loaded.summary() == devices.summary()
    loaded.add_array(make_ct(99), SPACING, "base")  # resumable
    assert loaded.devices["base"].n_volumes == 3


def test_merge_equals_sequential_accumulation():
    volumes = [make_ct(s, offset=10.0 * s) for s in range(3)]
    together, first, second = (DeviceStatsAccumulator() for _ in range(3))
    for i, array in enumerate(volumes):
        together.add_array(array, SPACING, "dev")
        (first if i < 2 else second).add_array(array, SPACING, "dev")
    first.merge(second)
    a, b = together.devices["dev"], first.devices["dev"]
    np.testing.assert_array_equal(a.histogram, b.histogram)
    assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
    assert a.noise_hu == b.noise_hu and a.n_voxels == b.n_voxels


def test_add_volume_uses_device_group_and_rejects_mr():
    acc = DeviceStatsAccumulator()
    affine = np.diag([*SPACING, 1.0])
    acc.add(Volume(make_ct(5), affine, provenance={"device_group": "acme-ct1"}))
    acc.add(Volume(make_ct(6), affine))
    assert sorted(acc.devices) == ["acme-ct1", "unknown"]
    assert acc.summary()["acme-ct1"]["spacing_mm"] == pytest.approx(SPACING.tolist())
    with pytest.raises(UnsupportedModalityError, match=r"CT \(HU\) only; got a 'MR'"):
        acc.add(Volume(make_ct(7), affine, modality="MR"))


def test_a_sample_taken_once_gives_the_statistics_of_the_volume():
    # Ingest samples the slices once for the volume QC and the statistics.
    array = make_ct(8, shape=(96, 80, 40))
    volume = Volume(array, np.diag([*SPACING, 1.0]), provenance={"device_group": "acme"})
    whole, shared = DeviceStatsAccumulator(), DeviceStatsAccumulator()
    whole.add(volume)
    shared.add(volume, sample_slices(array))
    assert shared.to_dict() == whole.to_dict()
    assert sample_slices(array).shape == (96, 80, MAX_SLICES)


def test_quartiles_of_body_rows_equal_numpy_percentile():
    rng = np.random.default_rng(2)
    for n in [*range(1, 40), 255, 256, 511]:
        rows = np.sort(rng.choice(1024, size=n, replace=False))
        expected = tuple(int(v) for v in np.percentile(rows, [25, 75]).astype(int))
        assert _quartiles(rows) == expected
