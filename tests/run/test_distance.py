"""Input distance: 0 for a training device's own statistics, growing with an HU shift."""

from __future__ import annotations

import numpy as np
import pytest

from triage.preprocess.stats import DeviceStatsAccumulator
from triage.run.distance import input_distance


def _stats(shift: float = 0.0, scale: float = 1.0, device: str = "acme") -> dict:
    rng = np.random.default_rng(0)
    acc = DeviceStatsAccumulator()
    acc.add_array(rng.normal(40 + shift, 100 * scale, (32, 32, 8)), np.ones(3), device)
    return acc.to_dict()


def test_distance_grows_with_the_shift_and_takes_the_nearest_device():
    train = _stats()
    train["devices"] |= _stats(shift=300, device="ember")["devices"]
    assert input_distance(_stats(), train) == pytest.approx(0.0, abs=1e-9)
    near, far = input_distance(_stats(shift=50), train), input_distance(_stats(shift=150), train)
    assert 0.3 < near < 0.7 < far
    assert input_distance(_stats(shift=300), train) == pytest.approx(0.0, abs=0.05)
    assert input_distance(_stats(scale=2.0), train) > 0.8


def test_distance_is_none_without_statistics():
    assert input_distance(None, _stats()) is None
    assert input_distance(_stats(), {}) is None
    assert input_distance({"format": 99}, _stats()) is None


def _noisy(noise: float, seed: int = 0) -> dict:
    """A phantom: air, soft tissue (40 HU) and bone (800 HU) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    array = np.full((64, 64, 8), -1000.0)
    array[:, 16:40] = 40.0
    array[:, 40:] = 800.0
    acc = DeviceStatsAccumulator()
    acc.add_array(array + rng.normal(0, noise, array.shape), np.ones(3), "acme")
    return acc.to_dict()


def _without_noise(stats: dict) -> dict:
    """The statistics as an older ingest or bundle recorded them: no noise estimates."""
    for device in stats["devices"].values():
        device.pop("noise_hu")
    return stats


def test_a_noise_only_shift_moves_the_distance_but_not_past_the_review_bound():
    train = _noisy(12.0)
    train["devices"]["acme"]["noise_hu"] += _noisy(12.0, seed=1)["devices"]["acme"]["noise_hu"]
    stable = [input_distance(_noisy(12.0, seed=s), train) for s in range(2, 6)]
    noisy = input_distance(_noisy(36.0, seed=2), train)
    assert max(stable) < 0.2  # the estimate's scatter between studies
    # 3x the noise: log2(3) = 1.58 from the noise term; the body-HU terms barely move.
    assert noisy == pytest.approx(1.58, abs=0.15)
    assert noisy > 5 * max(stable)
    # A noise-only shift is for monitoring (the input-distance CUSUM), not per-study review.
    assert noisy < 3.0


def test_statistics_without_noise_fall_back_to_the_body_hu_terms():
    train, study = _noisy(12.0), _noisy(36.0, seed=2)
    body_only = input_distance(_without_noise(_noisy(36.0, seed=2)), train)
    assert body_only is not None and body_only < 0.1
    assert input_distance(study, _without_noise(_noisy(12.0))) == pytest.approx(body_only)
    assert input_distance(_without_noise(_noisy(36.0, seed=2)),
                          _without_noise(_noisy(12.0))) == pytest.approx(body_only)
