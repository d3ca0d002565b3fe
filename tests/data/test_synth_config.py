"""Synthetic export settings: device registry, config validation and the cohort plan."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from triage.data.synth.cohort import assign_splits, plan_cohort
from triage.data.synth.config import SynthConfig, parse_splits
from triage.data.synth.devices import (
    DEVICE_PROFILES,
    KernelKind,
    get_device,
    register_device,
)
from triage.data.synth.study import occurs
from triage.dicom.device import device_group
from triage.errors import ConfigError


def test_registry_has_at_least_four_distinct_device_groups():
    profiles = list(DEVICE_PROFILES.values())
    assert len(profiles) >= 4
    for attribute in ("device_group", "manufacturer", "model_name", "station_name"):
        values = [getattr(p, attribute) for p in profiles]
        assert len(set(values)) == len(values), attribute
    for p in profiles:
        assert p.device_group == device_group(p.manufacturer, p.model_name)


def test_devices_differ_the_way_scanners_do():
    profiles = list(DEVICE_PROFILES.values())
    spacings = {(p.fov_mm[0] / p.matrix(256), p.fov_mm[1] / p.matrix(256)) for p in profiles}
    assert len(spacings) == len(profiles)
    assert any(a != b for a, b in spacings), "one device has non-square pixels"
    assert len({(p.slice_thickness_mm, p.slice_spacing_mm) for p in profiles}) == len(profiles)
    assert len({p.matrix(64) for p in profiles}) >= 2
    assert {p.kernel.kind for p in profiles} == {KernelKind.SMOOTH, KernelKind.SHARP}
    assert len({p.kernel.name for p in profiles}) == len(profiles)
    assert len({p.noise_hu for p in profiles}) == len(profiles)
    assert len({p.hu_offset for p in profiles}) == len(profiles)
    assert len({p.encoding for p in profiles}) >= 4
    assert {p.encoding.signed for p in profiles} == {True, False}
    assert {RLELossless, JPEG2000Lossless, JPEGLSLossless} <= {p.transfer_syntax for p in profiles}
    assert any(p.prone_fraction > 0 for p in profiles)
    assert any(p.tilt_fraction > 0 and p.gantry_tilt_deg for p in profiles)
    assert any(p.gap_fraction > 0 for p in profiles)
    assert any(p.reversed_instances for p in profiles)
    assert any(p.feet_first_order for p in profiles)
    assert len({p.naming for p in profiles}) >= 3


def test_get_device_rejects_unknown_name_with_valid_choices():
    with pytest.raises(ValueError, match=r"Unknown device profile 'acmee'\. Did you mean "
                                         r"'acme'\? Valid devices: acme, borealis"):
        get_device("acmee")


def test_register_device_rejects_duplicate_group():
    clone = dataclasses.replace(get_device("acme"), name="acme2")
    with pytest.raises(ConfigError, match="already used by 'acme'"):
        register_device(clone)
    assert "acme2" not in DEVICE_PROFILES


@pytest.mark.parametrize(("overrides", "message"), [
    ({"prevalence": 1.5}, r"prevalence must be within \[0, 1\], got 1\.5\."),
    ({"studies": 0}, r"studies must be a positive integer, got 0\."),
    ({"matrix": 16}, r"matrix must be an integer in 32\.\.1024, got 16\."),
    ({"lesion_diameter_mm": (10.0, 5.0)}, r"lesion_diameter_mm must be \(min, max\)"),
    ({"devices": "acme,acme"}, r"devices: each device may be listed once"),
    ({"devices": "acme,nope"}, r"Unknown device profile 'nope'"),
    ({"splits": (("train", 0.5), ("test", 0.2))}, r"sum of split fractions must be 1, got 0\.7"),
    ({"splits": (("train", 0.5), ("holdout", 0.5))}, r"splits must be one of calib, test"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**overrides)


def test_parse_splits():
    assert parse_splits("train=0.8, test=0.2") == (("train", 0.8), ("test", 0.2))
    with pytest.raises(ConfigError, match=r"splits: 'train' is not of the form name=fraction"):
        parse_splits("train,test=1")


def test_config_resolves_device_names():
    config = SynthConfig(devices="borealis, acme")
    assert config.device_names == ("borealis", "acme")


def test_cohort_prevalence_patients_and_devices():
    slots = plan_cohort(SynthConfig(studies=400, seed=1, prevalence=0.3))
    assert len(slots) == 400
    assert abs(sum(s.label for s in slots) / 400 - 0.3) < 0.07
    per_patient: dict[int, list] = {}
    for s in slots:
        per_patient.setdefault(s.patient, []).append(s)
    assert any(len(v) == 2 for v in per_patient.values()), "some patients have two studies"
    for studies in per_patient.values():
        assert len({s.split for s in studies}) == 1
        assert len({s.patient_key for s in studies}) == 1
    counts = {name: sum(s.device.name == name for s in slots) for name in DEVICE_PROFILES}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(s.patient_key.startswith("pk-") for s in slots)


def test_cohort_is_a_prefix_of_a_larger_cohort():
    small = plan_cohort(SynthConfig(studies=7, seed=4))
    large = plan_cohort(SynthConfig(studies=30, seed=4))
    for a, b in zip(small, large, strict=False):
        assert (a.patient, a.visit, a.label, a.device.name) == (b.patient, b.visit, b.label,
                                                                b.device.name)


@pytest.mark.parametrize("prevalence", [0.0, 1.0])
def test_cohort_extreme_prevalence(prevalence):
    labels = {s.label for s in plan_cohort(SynthConfig(studies=20, prevalence=prevalence))}
    assert labels == {int(prevalence)}


def test_assign_splits_exact_quotas_and_no_empty_split():
    names = assign_splits(0, 20, (("train", 0.6), ("val", 0.1), ("calib", 0.15),
                                  ("test", 0.15)))
    assert {n: names.count(n) for n in set(names)} == {"train": 12, "val": 2, "calib": 3,
                                                       "test": 3}
    small = assign_splits(0, 4, (("train", 0.6), ("val", 0.1), ("calib", 0.15),
                                 ("test", 0.15)))
    assert set(small) == {"train", "val", "calib", "test"}


def test_quirk_frequency_is_exact_and_starts_with_the_first_study():
    assert occurs(0.35, 0) and occurs(1.0, 5) and not occurs(0.0, 0)
    assert sum(occurs(0.3, k) for k in range(100)) == 30


def test_device_noise_replaces_one_profile_noise_level():
    config = SynthConfig(devices="acme,cygnus", device_noise="cygnus=50")
    by_name = {d.name: d for d in config.devices}
    assert by_name["cygnus"].noise_hu == 50.0
    assert by_name["acme"].noise_hu == get_device("acme").noise_hu
    assert by_name["cygnus"].device_group == get_device("cygnus").device_group
    assert SynthConfig(device_noise=(("acme", 3),)).device_noise == (("acme", 3.0),)
    with pytest.raises(ConfigError, match="'ember' is not one of the export's devices"):
        SynthConfig(devices="acme", device_noise="ember=20")
    with pytest.raises(ConfigError, match="is not DEVICE=HU"):
        SynthConfig(device_noise="cygnus:50")
    with pytest.raises(ConfigError, match=r"device_noise\[acme\] must be within"):
        SynthConfig(device_noise="acme=-1")
