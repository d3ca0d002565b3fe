"""Tests of the generic training augmentation (flips, shifts, intensity jitter)."""

from __future__ import annotations

import numpy as np
import pytest

from triage.errors import ConfigError
from triage.train.augment import Augmentation, compose, shift
from triage.train.config import AugmentConfig, TrainConfig


def volume() -> np.ndarray:
    return np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)


def test_disabled_augmentation_returns_the_volume_unchanged():
    out, info = Augmentation(AugmentConfig())(volume(), None, np.random.default_rng(0))
    assert info is None
    np.testing.assert_array_equal(out, volume())


def test_flips_only_permute_voxels_and_are_seeded():
    aug = Augmentation(AugmentConfig(enabled=True, p_flip=1.0))
    out, _ = aug(volume(), None, np.random.default_rng(0))
    np.testing.assert_array_equal(out, volume()[::-1, ::-1, ::-1])
    aug = Augmentation(AugmentConfig(enabled=True, p_flip=0.5, max_shift=(2, 2, 1),
                                     p_intensity=1.0))
    a, _ = aug(volume(), None, np.random.default_rng([1, 2, 3]))
    b, _ = aug(volume(), None, np.random.default_rng([1, 2, 3]))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.flags.c_contiguous


def test_flip_axes_restricts_the_flipped_axes():
    aug = Augmentation(AugmentConfig(enabled=True, p_flip=1.0, flip_axes=(2,)))
    out, _ = aug(volume(), None, np.random.default_rng(0))
    np.testing.assert_array_equal(out, volume()[:, :, ::-1])


def test_shift_moves_without_wrapping_and_fills():
    out = shift(volume(), [1, -2, 0], fill=-1.0)
    np.testing.assert_array_equal(out[1:, :-2], volume()[:-1, 2:])
    assert (out[0] == -1).all() and (out[:, -2:] == -1).all()


def test_compose_merges_the_infos_and_applies_in_order():
    from types import SimpleNamespace

    def first(a, s, rng):
        return a + 1, SimpleNamespace(target_device="cygnus")

    def second(a, s, rng):
        return a * 2, None

    def third(a, s, rng):
        return a, SimpleNamespace(operators=np.array([1, 0]))

    out, info = compose(first, None, second, third, third)(np.zeros(3, np.float32), None,
                                                           None)
    assert info.target_device == "cygnus"
    np.testing.assert_array_equal(info.operators, [2, 0])
    np.testing.assert_array_equal(out, [2, 2, 2])
    assert compose(None, None) is None


def test_augment_section_is_validated_and_round_trips():
    config = TrainConfig.from_dict({"augment": {"enabled": True, "max_shift": [4, 4, 1]}})
    assert config.augment.max_shift == (4, 4, 1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="augment.max_shift"):
        TrainConfig.from_dict({"augment": {"max_shift": [1, 2]}})
    with pytest.raises(ConfigError, match="augment.p_flip"):
        TrainConfig.from_dict({"augment": {"p_flip": 2}})
