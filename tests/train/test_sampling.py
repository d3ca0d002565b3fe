"""Epoch samplers: balanced class and device frequencies, determinism per (seed, epoch)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from triage.errors import ConfigError
from triage.train.config import SamplingConfig
from triage.train.sampling import make_sampler, sample_weights

# Imbalanced on purpose: 80 % negatives; device "a" holds most studies, "c" has no positive.
LABELS = [0] * 60 + [1] * 6 + [0] * 15 + [1] * 9 + [0] * 5
DEVICES = ["a"] * 66 + ["b"] * 24 + ["c"] * 5


def frequencies(indices, values):
    counts = Counter(values[i] for i in indices)
    return {k: v / len(indices) for k, v in counts.items()}


def test_class_aware_and_device_balanced():
    sampler = make_sampler(LABELS, DEVICES, SamplingConfig(epoch_size=20000), seed=0)
    assert len(sampler) == 20000
    idx = list(sampler)
    cls = frequencies(idx, LABELS)
    assert cls[0] == pytest.approx(0.5, abs=0.02) and cls[1] == pytest.approx(0.5, abs=0.02)
    cells = frequencies(idx, list(zip(LABELS, DEVICES, strict=True)))
    # negatives: three devices share 1/2; positives: two devices share 1/2
    for device in "abc":
        assert cells[(0, device)] == pytest.approx(1 / 6, abs=0.015)
    for device in "ab":
        assert cells[(1, device)] == pytest.approx(1 / 4, abs=0.015)


def test_device_balanced_only():
    config = SamplingConfig(class_aware=False, device_balanced=True, epoch_size=20000)
    idx = list(make_sampler(LABELS, DEVICES, config, seed=1))
    dev = frequencies(idx, DEVICES)
    for device in "abc":
        assert dev[device] == pytest.approx(1 / 3, abs=0.02)


def test_class_aware_only_keeps_device_mix_within_a_class():
    config = SamplingConfig(class_aware=True, device_balanced=False, epoch_size=20000)
    idx = list(make_sampler(LABELS, DEVICES, config, seed=2))
    cells = frequencies(idx, list(zip(LABELS, DEVICES, strict=True)))
    assert cells[(1, "a")] == pytest.approx(0.5 * 6 / 15, abs=0.015)


def test_weights_are_probabilities():
    weights = sample_weights(LABELS, DEVICES, class_aware=True, device_balanced=True)
    assert weights.sum() == pytest.approx(1.0)
    assert sample_weights(LABELS, DEVICES, class_aware=False, device_balanced=False) is None


def test_no_balancing_is_a_shuffle_of_every_sample():
    config = SamplingConfig(class_aware=False, device_balanced=False)
    idx = list(make_sampler(LABELS, DEVICES, config, seed=0))
    assert sorted(idx) == list(range(len(LABELS)))
    longer = list(make_sampler(LABELS, DEVICES, SamplingConfig(False, False, 150), seed=0))
    assert len(longer) == 150 and set(longer) == set(range(len(LABELS)))


def test_epoch_size_defaults_to_the_training_split():
    assert len(make_sampler(LABELS, DEVICES, SamplingConfig(), seed=0)) == len(LABELS)


def test_deterministic_per_seed_and_epoch():
    config = SamplingConfig()
    first = list(make_sampler(LABELS, DEVICES, config, seed=7, epoch=3))
    assert first == list(make_sampler(LABELS, DEVICES, config, seed=7, epoch=3))
    assert first != list(make_sampler(LABELS, DEVICES, config, seed=7, epoch=4))
    assert first != list(make_sampler(LABELS, DEVICES, config, seed=8, epoch=3))


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ConfigError, match="3 labels but 2 device groups"):
        make_sampler([0, 1, 0], ["a", "b"], SamplingConfig(), seed=0)
    with pytest.raises(ConfigError, match="training split is empty"):
        make_sampler([], [], SamplingConfig(), seed=0)


def test_integer_device_indices_work_too():
    idx = list(make_sampler(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1]),
                            SamplingConfig(epoch_size=8), seed=0))
    assert len(idx) == 8
