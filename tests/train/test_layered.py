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


@pytest.mark.parametrize("sigma", [1.5, 6.0])
@pytest.mark.parametrize("shape", [(40, 30, 12), (9, 20, 7)])
def test_smoothing_equals_monai_gaussian_filter(sigma, shape):
    """The displacement field's smoothing gives MONAI GaussianFilter's values (truncated at
    3 sigma, zero padding), grids shorter than the kernel included."""
    import torch
    from monai.networks.layers import GaussianFilter

    from triage.train.layered import _smooth

    field = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = GaussianFilter(3, sigma, 3.0)(field[None])[0]
    torch.testing.assert_close(_smooth(field, sigma)[0], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("magnitude", [0.5, 2.0])
def test_elastic_magnitude_is_the_displacement_sd_in_voxels(magnitude):
    """MONAI's magnitude is a bare factor on a smoothed field of sd ~0.005 voxel; the
    operator's is the displacement's standard deviation along each axis, in voxels (judged
    away from the zero-padded borders, over a few draws)."""
    from monai.transforms import Rand3DElastic

    from triage.train.layered import _displacement

    transform = Rand3DElastic(sigma_range=(5.0, 7.0), magnitude_range=(magnitude, magnitude),
                              prob=1.0, padding_mode="zeros")
    transform.set_random_state(seed=3)
    inner = np.concatenate([_displacement(transform, (72, 72, 72))[:, 24:-24, 24:-24, 24:-24]
                            .numpy().ravel() for _ in range(6)])
    assert inner.std() == pytest.approx(magnitude, rel=0.15)


@pytest.mark.parametrize("seed", [0, 1])
def test_elastic_is_monais_rand3delastic_with_the_magnitude_in_voxels(seed):
    """With sigma and magnitude fixed, the operator gives what MONAI's Rand3DElastic gives
    for the same seed once MONAI's magnitude is scaled by the smoothed field's spread."""
    import math

    import torch
    from monai.transforms import Rand3DElastic

    from triage.train.layered import _elastic, _smooth

    image = np.random.default_rng(seed).random((1, 40, 30, 12)).astype(np.float32)
    sigma, voxels = 6.0, 1.5
    kernel = _smooth(torch.zeros(1, 1, 1, 1), sigma)[1]
    spread = math.sqrt(1.0 / 3.0) * float((kernel ** 2).sum()) ** 1.5
    ours = Rand3DElastic(sigma_range=(sigma, sigma), magnitude_range=(voxels, voxels),
                         prob=1.0, padding_mode="zeros")
    monai = Rand3DElastic(sigma_range=(sigma, sigma),
                          magnitude_range=(voxels / spread, voxels / spread), prob=1.0,
                          padding_mode="zeros")
    for transform in (ours, monai):
        transform.set_random_state(seed=seed)
    expected = np.asarray(monai(image))
    out = np.asarray(_elastic(ours, image))
    assert np.abs(expected - image).max() > 0.2  # a real deformation
    np.testing.assert_allclose(out, expected, atol=1e-4)


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


def test_fingerprint_sees_a_switched_off_section_only_as_off():
    """A default of a transform a run does not use cannot change its result, so it leaves
    the run's fingerprint (resumed trainings, stored benchmark rows) as it was; switched
    on, every parameter counts."""
    from triage.train.config import TrainConfig

    base = TrainConfig()
    assert not base.layered.enabled
    moved = base.replace(layered={"elastic_magnitude": (0.0, 3.0), "p_strong": 0.9})
    assert moved.fingerprint() == base.fingerprint()
    on = base.replace(layered={"enabled": True})
    assert on.fingerprint() != base.fingerprint()
    assert on.replace(layered={"elastic_magnitude": (0.0, 3.0)}).fingerprint() \
        != on.fingerprint()
    assert base.replace(augment={"enabled": not base.augment.enabled}).fingerprint() \
        != base.fingerprint()
