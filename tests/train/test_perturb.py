"""Tests of the device-grouped perturbation: a device-A volume moves to device B's look."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.training_factory import DEVICE_LOOKS, phantom
from triage.data.dataset import Sample
from triage.train.appearance import (
    LANDMARK_QUANTILES,
    Appearance,
    estimate_appearances,
    measure_volume,
)
from triage.train.config import PerturbConfig
from triage.train.perturb import DevicePerturbation, PerturbInfo

SHAPE = (64, 64, 24)
NO_ARTEFACTS = {"p_bias_field": 0.0, "p_gamma": 0.0, "p_noise": 0.0, "p_smooth": 0.0}
CENTRAL = slice(LANDMARK_QUANTILES.index(0.10), LANDMARK_QUANTILES.index(0.90) + 1)


def sample(device: str, label: int = 1) -> Sample:
    return Sample(study_uid="1.2.3", patient_key="PK", label=label, device_group=device,
                  split="train", cache_key="k")


def transfer_only(**changes) -> PerturbConfig:
    """Always transfer, no artefacts; `changes` switch steps off."""
    return PerturbConfig(p_transfer=1.0, **{**NO_ARTEFACTS, **changes})


@pytest.fixture(scope="module")
def volumes() -> dict[str, list[np.ndarray]]:
    """Four factory phantoms (two labels) per device, 64x64x24."""
    rng = np.random.default_rng(0)
    return {d: [phantom(SHAPE, i % 2, d, rng) for i in range(4)] for d in DEVICE_LOOKS}


@pytest.fixture(scope="module")
def looks(volumes) -> dict[str, Appearance]:
    return estimate_appearances(volumes)


def render(looks, source: str, target: str, config: PerturbConfig, volume: np.ndarray,
           seed: int = 0) -> tuple[np.ndarray, PerturbInfo]:
    """Render `volume` of `source` as `target` (the only other device offered)."""
    perturb = DevicePerturbation(config, {source: looks[source], target: looks[target]})
    return perturb(volume.copy(), sample(source), np.random.default_rng(seed))


@pytest.mark.parametrize(("source", "target"), [("acme", "cygnus"), ("cygnus", "ember"),
                                                ("ember", "borealis")])
def test_landmark_mapping_sends_a_landmarks_to_b(looks, volumes, source, target):
    out, info = render(looks, source, target, transfer_only(noise=False, resolution=False),
                       volumes[source][0])
    assert info == PerturbInfo(source, target, ())
    found = measure_volume(out).landmarks
    wanted = np.array(looks[target].landmarks)
    assert np.abs(found - wanted)[CENTRAL].max() < 0.02  # q10-q90
    assert np.abs(found - wanted).max() < 0.1  # q1, q99: lesion share varies per volume


def test_noise_is_raised_to_a_noisier_device(looks, volumes):
    out, _ = render(looks, "acme", "cygnus", transfer_only(intensity=False, resolution=False),
                    volumes["acme"][0])
    assert measure_volume(out).noise_sigma == pytest.approx(looks["cygnus"].noise_sigma,
                                                            rel=0.08)


def test_noise_is_not_lowered_towards_a_quieter_device(looks, volumes):
    volume = volumes["cygnus"][0]
    out, _ = render(looks, "cygnus", "acme", transfer_only(intensity=False, resolution=False),
                    volume)
    assert np.array_equal(out, volume)


def test_blur_is_raised_to_a_blurrier_device(looks, volumes):
    out, _ = render(looks, "acme", "ember", transfer_only(intensity=False, noise=False),
                    volumes["acme"][0])
    measured = measure_volume(out).resolution_sigma
    assert measured == pytest.approx(looks["ember"].resolution_sigma, abs=0.15)
    assert measured > looks["acme"].resolution_sigma + 0.6


def test_a_sharper_device_is_not_deblurred(looks, volumes):
    volume = volumes["ember"][0]
    out, _ = render(looks, "ember", "acme", transfer_only(intensity=False, noise=False),
                    volume)
    assert np.array_equal(out, volume)


@pytest.mark.parametrize(("source", "target"), [("acme", "cygnus"), ("acme", "ember"),
                                                ("cygnus", "borealis")])
def test_full_transfer_moves_every_statistic_to_b(looks, volumes, source, target):
    """Intensity, blur and noise together: the noise already scaled by the intensity map
    and lowered by the blur is counted before any is added. (The added blur spreads the
    edges over more of these small bodies and lowers the median a little.)"""
    out, _ = render(looks, source, target, transfer_only(), volumes[source][1])
    found, b, a = measure_volume(out), looks[target], looks[source]
    assert found.noise_sigma == pytest.approx(b.noise_sigma, rel=0.15)
    assert abs(found.landmarks[4] - b.landmarks[4]) < 0.035  # median
    if b.resolution_sigma > a.resolution_sigma:
        assert found.resolution_sigma == pytest.approx(b.resolution_sigma, abs=0.15)


def test_output_is_float32_same_shape_in_range_and_input_untouched(looks, volumes):
    config = PerturbConfig(p_transfer=1.0, p_bias_field=1.0, p_gamma=1.0, p_noise=1.0,
                           p_smooth=1.0)
    volume = volumes["cygnus"][1]
    before = volume.copy()
    out, info = DevicePerturbation(config, looks)(volume, sample("cygnus"),
                                                  np.random.default_rng(4))
    assert np.array_equal(volume, before)
    assert out.dtype == np.float32 and out.shape == volume.shape
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
    assert info.artefacts == ("bias_field", "gamma", "noise", "smooth")
    assert info.target_device in {"acme", "borealis", "ember"}


def test_same_seed_same_output_other_seed_other_output(looks, volumes):
    config = PerturbConfig(p_transfer=1.0, p_bias_field=1.0, p_gamma=1.0, p_noise=1.0,
                           p_smooth=1.0)
    perturb = DevicePerturbation(config, looks)
    volume = volumes["acme"][0]
    first = perturb(volume, sample("acme"), np.random.default_rng(7))
    again = DevicePerturbation(config, looks)(volume, sample("acme"), np.random.default_rng(7))
    other = perturb(volume, sample("acme"), np.random.default_rng(8))
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert not np.allclose(first[0], other[0])


def test_p_transfer_is_respected_and_targets_are_uniform(looks):
    """400 draws: the count of transfers lies within 4 binomial standard deviations."""
    p, n = 0.3, 400
    perturb = DevicePerturbation(PerturbConfig(p_transfer=p, **NO_ARTEFACTS), looks)
    tiny = np.full((4, 4, 2), 0.5, np.float32)
    rng = np.random.default_rng(11)
    targets = [perturb(tiny, sample("borealis"), rng)[1].target_device for _ in range(n)]
    moved = [t for t in targets if t is not None]
    assert abs(len(moved) - p * n) < 4 * math.sqrt(n * p * (1 - p))
    assert set(moved) == {"acme", "cygnus", "ember"}
    for device in ("acme", "cygnus", "ember"):  # each a third of the transfers
        share = moved.count(device) / len(moved)
        assert abs(share - 1 / 3) < 4 * math.sqrt(2 / 9 / len(moved))


def test_artefact_probability_is_respected(looks):
    p, n = 0.5, 200
    config = dataclasses.replace(PerturbConfig(p_transfer=0.0, **NO_ARTEFACTS), p_gamma=p)
    perturb = DevicePerturbation(config, looks)
    tiny = np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 4, 2)
    rng = np.random.default_rng(12)
    count = sum("gamma" in perturb(tiny, sample("acme"), rng)[1].artefacts for _ in range(n))
    assert abs(count - p * n) < 4 * math.sqrt(n * p * (1 - p))


def test_disabled_is_the_identity(looks, volumes):
    perturb = DevicePerturbation(PerturbConfig(enabled=False, p_transfer=1.0, p_noise=1.0),
                                 looks)
    volume = volumes["acme"][0]
    out, info = perturb(volume, sample("acme"), np.random.default_rng(0))
    assert np.array_equal(out, volume)
    assert info == PerturbInfo("acme", None, ())


def test_unknown_device_gets_artefacts_only(looks, volumes):
    config = PerturbConfig(p_transfer=1.0, **{**NO_ARTEFACTS, "p_noise": 1.0})
    volume = volumes["acme"][0]
    out, info = DevicePerturbation(config, looks)(volume, sample("zeta"),
                                                  np.random.default_rng(0))
    assert info == PerturbInfo("zeta", None, ("noise",))
    assert not np.array_equal(out, volume)
    assert (out[volume == 0] == 0).all()  # air stays air


def test_describe_is_flat_scalars_with_every_device(looks):
    described = DevicePerturbation(PerturbConfig(), looks).describe()
    assert all(isinstance(v, str | int | float | bool | type(None))
               for v in described.values())
    assert described["perturbation.p_transfer"] == 0.5
    assert described["perturbation.devices"] == "acme,borealis,cygnus,ember"
    for device, look in looks.items():
        landmarks = described[f"perturbation.device.{device}.landmarks"].split(",")
        assert len(landmarks) == len(LANDMARK_QUANTILES)
        assert described[f"perturbation.device.{device}.noise_sigma"] == pytest.approx(
            look.noise_sigma, abs=1e-5)
        assert f"perturbation.device.{device}.resolution_sigma" in described


def test_misfiled_appearance_and_bad_value_range_are_rejected(looks):
    with pytest.raises(ValueError, match="is filed under 'cygnus'"):
        DevicePerturbation(PerturbConfig(), {"cygnus": looks["acme"]})
    with pytest.raises(ValueError, match="low < high"):
        DevicePerturbation(PerturbConfig(), looks, value_range=(1.0, 0.0))


def test_in_the_dataset_labels_stay_and_rendered_as_is_reported(tiny_training_set, looks):
    from triage.data.dataset import CachedVolumeDataset, resolve_samples
    from triage.data.manifest import read_manifest

    resolved = resolve_samples(read_manifest(tiny_training_set.manifest_path),
                               tiny_training_set.ingest_dir)
    train = resolved.split("train")
    devices = sorted(DEVICE_LOOKS)
    dataset = CachedVolumeDataset(train, tiny_training_set.ingest_dir / "cache",
                                  devices=devices, transform=DevicePerturbation(
                                      transfer_only(), looks))
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["label"] for item in items] == [s.label for s in train]
    for item, s in zip(items, train, strict=True):
        assert item["rendered_as"] != devices.index(s.device_group)
        assert item["rendered_as"] >= 0
        assert item["image"].shape == (1, *tiny_training_set.shape)
