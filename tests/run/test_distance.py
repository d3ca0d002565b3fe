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
