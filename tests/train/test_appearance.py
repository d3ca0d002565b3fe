"""Tests of the per-device appearance estimators: they recover known offset, noise and blur."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from tests.training_factory import DEVICE_LOOKS, phantom
from triage.train.appearance import (
    LANDMARK_QUANTILES,
    Appearance,
    blur_kernel,
    estimate_appearance,
    estimate_appearances,
    measure_volume,
    noise_gain,
)

SHAPE = (64, 64, 24)


def make_body(shape=SHAPE, *, offset=0.0, noise=0.02, blur=0.0, seed=0) -> np.ndarray:
    """CT-window phantom: air (0), a 0.25 fat rim, 0.5 tissue with a 0.6 organ; in-plane
    blur by `blur_kernel(blur²)` (known effective resolution), then offset and noise in the
    body, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid[0] / 0.8) ** 2 + (grid[1] / 0.7) ** 2 + (grid[2] / 0.95) ** 2)
    array = np.where(r <= 1.0, 0.25, 0.0)
    array[r <= 0.6] = 0.5
    array[((grid[0] - 0.25) ** 2 + grid[1] ** 2 + grid[2] ** 2) <= 0.09] = 0.6
    if blur:
        k = blur_kernel(blur * blur)
        array = ndimage.correlate1d(array, k, axis=0, mode="nearest")
        array = ndimage.correlate1d(array, k, axis=1, mode="nearest")
    body = r <= 1.0
    array = array + body * (offset + rng.normal(0, noise, shape))
    return np.clip(array, 0, 1).astype(np.float32)


@pytest.mark.parametrize("variance", [0.0, 0.05, 0.3, 0.5, 0.8, 2.25, 6.0])
def test_blur_kernel_has_exactly_the_requested_variance(variance):
    k = blur_kernel(variance)
    x = np.arange(k.size) - k.size // 2
    assert k.sum() == pytest.approx(1.0)
    assert np.allclose(k, k[::-1]) and (k >= 0).all()
    assert (k * x * x).sum() == pytest.approx(variance, abs=1e-6)


def test_noise_gain_predicts_the_measured_noise_of_blurred_white_noise():
    k = blur_kernel(0.8)
    noise = np.random.default_rng(0).normal(0.5, 0.05, SHAPE).astype(np.float32)
    blurred = ndimage.correlate1d(ndimage.correlate1d(noise, k, axis=0), k, axis=1)
    body = make_body(noise=0.0)  # only to reuse a body mask: measure inside it
    inside = np.where(body > 0, blurred, 0).astype(np.float32)
    measured = measure_volume(inside).noise_sigma
    assert measured == pytest.approx(0.05 * noise_gain(k), rel=0.06)
    assert noise_gain(np.array([1.0])) == 1.0


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.06])
def test_noise_estimate_recovers_the_noise_level(sigma):
    measured = measure_volume(make_body(noise=sigma, seed=1)).noise_sigma
    assert measured == pytest.approx(sigma, rel=0.08)


@pytest.mark.parametrize("blur", [0.5, 1.0, 1.5, 2.0])
def test_resolution_estimate_recovers_a_known_blur(blur):
    measured = measure_volume(make_body(blur=blur, noise=0.01, seed=2)).resolution_sigma
    assert measured == pytest.approx(blur, abs=0.12)


def test_resolution_estimate_of_a_sharp_edge_is_small():
    """A voxel-aligned step on a curved surface reads ~0.2 (the crossing is found on the
    3x3 mean, which mixes neighbouring rows whose steps sit one voxel apart)."""
    assert measure_volume(make_body(noise=0.0)).resolution_sigma < 0.25
    assert measure_volume(make_body(noise=0.01, seed=2)).resolution_sigma < 0.3


@pytest.mark.parametrize("device", ["acme", "borealis", "ember"])
def test_resolution_estimate_on_the_factory_phantoms(device):
    """The factory blurs in 3-D with scipy's sampled Gaussian: compare to that kernel's
    standard deviation (0.59 for sigma 0.6)."""
    blur = DEVICE_LOOKS[device][2]
    impulse = np.zeros(21)
    impulse[10] = 1.0
    k = ndimage.gaussian_filter1d(impulse, blur) if blur else impulse
    expected = math.sqrt((k * (np.arange(21) - 10) ** 2).sum())
    rng = np.random.default_rng(3)
    volumes = [phantom(SHAPE, label, device, rng) for label in (0, 1)]
    measured = estimate_appearance(volumes, device).resolution_sigma
    assert measured == pytest.approx(expected, abs=0.25 if blur == 0 else 0.12)


def test_noise_does_not_move_the_resolution_estimate():
    """Crossings are found on the 3x3 mean: noisier edges do not read sharper (single
    volumes spread by ~0.04 at noise / step = 8 %, ~0.08 at 16 %)."""
    def median_of(noise: float) -> float:
        volumes = [make_body(blur=0.8, noise=noise, seed=seed) for seed in range(4)]
        return estimate_appearance(volumes, "x").resolution_sigma

    assert median_of(0.04) == pytest.approx(median_of(0.005), abs=0.08)


def test_landmarks_follow_an_intensity_offset():
    base = measure_volume(make_body(seed=5)).landmarks
    shifted = measure_volume(make_body(offset=0.05, seed=5)).landmarks
    assert np.allclose(shifted - base, 0.05, atol=0.006)
    assert base[0] > 0.15  # air and the air/body boundary stay out of the "body"


def test_air_noise_stays_out_of_the_body():
    """Factory air is clipped noise (half-normal): it must not reach the low landmarks."""
    rng = np.random.default_rng(6)
    appearance = estimate_appearance([phantom(SHAPE, 0, "cygnus", rng) for _ in range(2)],
                                     "cygnus")
    assert appearance.landmarks[0] > 0.3
    assert appearance.floor == 0.0


def test_appearance_round_trips_through_json():
    a = Appearance("acme", 3, tuple(np.linspace(0.2, 0.6, len(LANDMARK_QUANTILES))), 0.02,
                   float("nan"))
    back = Appearance.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.landmarks == a.landmarks and back.noise_sigma == a.noise_sigma
    assert math.isnan(back.resolution_sigma) and back.device_group == "acme"


def test_appearance_rejects_bad_landmarks_and_other_quantiles():
    with pytest.raises(ValueError, match="needs 9 finite landmarks"):
        Appearance("acme", 1, (0.1, 0.2), 0.02, 0.5)
    with pytest.raises(ValueError, match="must be non-decreasing"):
        Appearance("acme", 1, (0.5,) + (0.1,) * 8, 0.02, 0.5)
    data = Appearance("acme", 1, (0.3,) * 9, 0.02, 0.5).to_dict()
    data["landmark_quantiles"] = [0.5] * 9
    with pytest.raises(ValueError, match="Re-estimate the appearances"):
        Appearance.from_dict(data)


def test_estimate_appearance_rejects_empty_volumes_and_3d_is_required():
    with pytest.raises(ValueError, match="none of its 2 volumes"):
        estimate_appearance([np.zeros((16, 16, 8), np.float32)] * 2, "acme")
    with pytest.raises(ValueError, match="needs a 3-D volume"):
        measure_volume(np.zeros((16, 16), np.float32))


def test_appearances_of_the_tiny_training_set_separate_its_devices(tiny_training_set):
    from triage.data.dataset import load_array, resolve_samples
    from triage.data.manifest import read_manifest
    from triage.preprocess.cache import VolumeCache

    resolved = resolve_samples(read_manifest(tiny_training_set.manifest_path),
                               tiny_training_set.ingest_dir)
    cache = VolumeCache(tiny_training_set.ingest_dir / "cache")
    by_device: dict[str, list[np.ndarray]] = {}
    for sample in resolved.split("train"):
        by_device.setdefault(sample.device_group, []).append(load_array(cache, sample))
    found = estimate_appearances(by_device)

    assert list(found) == sorted(DEVICE_LOOKS)
    median = {d: a.landmarks[LANDMARK_QUANTILES.index(0.5)] for d, a in found.items()}
    noise = {d: a.noise_sigma for d, a in found.items()}
    blur = {d: a.resolution_sigma for d, a in found.items()}
    assert max(median, key=median.get) == "cygnus"
    assert min(median, key=median.get) == "ember"
    assert max(noise, key=noise.get) == "cygnus"
    for device, (offset, sd, sigma) in DEVICE_LOOKS.items():
        assert noise[device] == pytest.approx(sd, rel=0.2)
        if not sigma:  # in 24x24x12 volumes a blurred edge reaches most of the body
            assert median[device] == pytest.approx(0.5 + offset, abs=0.01)
    assert blur["ember"] > blur["borealis"] > blur["acme"] + 0.3
    assert blur["acme"] < 0.3 and blur["cygnus"] < 0.3
