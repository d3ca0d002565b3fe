"""Layered augmentation: tiers, seeded draws, operator counts per epoch, config checks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.factories import tiny_config
from triage.errors import ConfigError
from triage.train.config import OPERATORS, LayeredAugmentConfig
from triage.train.layered import COUNT_NAMES, LayeredAugmentation


def volume() -> np.ndarray:
    return np.random.default_rng(0).random((12, 12, 6)).astype(np.float32)


def test_every_pool_operator_runs_and_keeps_the_shape():
    config = LayeredAugmentConfig(enabled=True, weak={op: 1.0 for op in OPERATORS},
                                  strong={op: 1.0 for op in OPERATORS}, p_strong=1.0)
    out, info = LayeredAugmentation(config)(volume(), None, np.random.default_rng(1))
    assert out.shape == volume().shape and out.dtype == np.float32
    assert np.isfinite(out).all() and not np.array_equal(out, volume())
    assert info.operators.tolist() == [1] * len(COUNT_NAMES)


def test_the_same_generator_gives_the_same_volume():
    aug = LayeredAugmentation(LayeredAugmentConfig(enabled=True, p_strong=1.0))
    a, ia = aug(volume(), None, np.random.default_rng(5))
    b, ib = aug(volume(), None, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia.operators, ib.operators)


def test_counts_follow_the_tier_probabilities():
    config = LayeredAugmentConfig(enabled=True, weak={"flip": 1.0, "noise": 0.5},
                                  strong={"intensity": 1.0}, p_strong=0.25)
    aug = LayeredAugmentation(config)
    rng = np.random.default_rng(0)
    total = sum(aug(volume(), None, rng)[1].operators for _ in range(400))
    counts = dict(zip(COUNT_NAMES, total.tolist(), strict=True))
    assert counts["weak.flip"] == 400
    assert 160 <= counts["weak.noise"] <= 240
    assert 70 <= counts["strong.intensity"] <= 130
    assert sum(counts.values()) == counts["weak.flip"] + counts["weak.noise"] \
        + counts["strong.intensity"]


def test_disabled_does_nothing():
    out, info = LayeredAugmentation(LayeredAugmentConfig())(volume(), None,
                                                            np.random.default_rng(0))
    np.testing.assert_array_equal(out, volume())
    assert info.operators.sum() == 0


def test_the_epoch_log_counts_every_operator_applied(make_dataset, tmp_path):
    from triage.model import create_model
    from triage.train.loop import fit

    config = tiny_config(optim={"epochs": 2}, sampling={"epoch_size": 24},
                         layered={"enabled": True, "weak": {"flip": 1.0, "noise": 0.5},
                                  "strong": {"intensity": 1.0}, "p_strong": 0.5})
    train_ds = make_dataset("train", transform=LayeredAugmentation(config.layered))
    model = create_model(config.model, (24, 24, 12), seed=0)
    counts = np.bincount(train_ds.labels(), minlength=2).tolist()
    result = fit(model, train_ds, None, config, tmp_path, class_counts=counts,
                 progress=False)
    for entry in result.history:
        assert set(entry.augment) == set(COUNT_NAMES)
        assert entry.augment["weak.flip"] == 24  # every sample of the epoch, once
        assert 0 < entry.augment["weak.noise"] < 24
        assert 0 < entry.augment["strong.intensity"] < 24
        assert entry.augment["weak.rotate"] == 0 and entry.augment["strong.noise"] == 0
    # the second view of a consistency pair is counted too
    both = make_dataset("train", transform=LayeredAugmentation(config.layered),
                        second_view=True)
    assert int(both[0]["operators"][COUNT_NAMES.index("weak.flip")]) == 2


def test_describe_lists_every_operator_of_both_tiers():
    params = LayeredAugmentation(LayeredAugmentConfig(weak={"flip": 0.4})).describe()
    assert params["augmentation.weak.flip"] == 0.4
    assert params["augmentation.weak.elastic"] == 0.0
    assert {f"augmentation.{name}" for name in COUNT_NAMES} <= set(params)


def test_unknown_operator_and_bad_probability_are_config_errors():
    with pytest.raises(ConfigError, match="operators among flip, rotate"):
        tiny_config(layered={"weak": {"cutout": 0.5}})
    with pytest.raises(ConfigError, match="layered.strong.noise"):
        tiny_config(layered={"strong": {"noise": 1.5}})
