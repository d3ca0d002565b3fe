"""Patient splits: deterministic, by patient, stratified, calib positives first, and an
extension never moves a patient already assigned."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from triage.data.manifest import Split
from triage.data.splitting import (
    DEFAULT_SPLITS,
    PatientStratum,
    SplitFractions,
    assign_splits,
    patient_strata,
)
from triage.errors import ConfigError

FRACTIONS = SplitFractions.parse(DEFAULT_SPLITS)
DEVICES = ("acme-ct", "borealis-ct", "cygnus-ct")


def _patients(n: int, seed: int = 0, prevalence: float = 0.3) -> list[PatientStratum]:
    rng = random.Random(seed)
    return [PatientStratum(f"pk-{seed:02d}{i:06d}", rng.choice(DEVICES),
                           int(rng.random() < prevalence)) for i in range(n)]


def test_equal_inputs_give_equal_splits_and_the_seed_changes_them():
    patients = _patients(300)
    first = assign_splits(patients, FRACTIONS, seed=5)
    assert assign_splits(list(reversed(patients)), FRACTIONS, seed=5) == first
    assert assign_splits(patients, FRACTIONS, seed=6) != first
    assert set(first) == {p.patient_key for p in patients}


def test_each_stratum_follows_the_fractions_and_calib_gets_the_positives_first():
    patients = _patients(1000, seed=1)
    split = assign_splits(patients, FRACTIONS, seed=0)
    for device in DEVICES:
        for label in (0, 1):
            members = [p for p in patients if (p.device_group, p.label) == (device, label)]
            counts = Counter(split[p.patient_key] for p in members)
            for name, fraction in FRACTIONS.fractions:
                assert abs(counts[name] - fraction * len(members)) <= 1.5, (device, label, name)
            if label == 1:  # rounded up, never down
                assert counts[Split.CALIB] == math.ceil(0.15 * len(members) - 1e-9)
    overall = Counter(split.values())
    for name, fraction in FRACTIONS.fractions:
        assert abs(overall[name] - fraction * len(patients)) <= 2


def test_a_device_with_few_positives_puts_them_in_calib_first():
    patients = [PatientStratum(f"pk-pos{i}", "rare-ct", 1) for i in range(3)]
    patients += [PatientStratum(f"pk-neg{i}", "rare-ct", 0) for i in range(20)]
    split = assign_splits(patients, FRACTIONS, seed=0)
    assert sum(split[f"pk-pos{i}"] is Split.CALIB for i in range(3)) == 1


def test_extension_keeps_every_assignment_and_fills_the_deficits():
    old = _patients(200, seed=2)
    fixed = {k: v.value for k, v in assign_splits(old, FRACTIONS, seed=3).items()}
    # an extension where the old split is lopsided: everyone old moved to train by hand
    lopsided = {k: "train" for k in fixed}
    new = _patients(200, seed=4)
    for existing in (fixed, lopsided):
        split = assign_splits(old + new, FRACTIONS, seed=3, fixed=existing)
        assert {k: split[k].value for k in existing} == existing
    split = assign_splits(old + new, FRACTIONS, seed=3, fixed=lopsided)
    new_counts = Counter(split[p.patient_key] for p in new)
    assert new_counts[Split.TRAIN] < 0.6 * len(new)  # the new ones fill the other splits


def test_patient_strata_take_the_majority_device_and_any_positive():
    strata = patient_strata([("pk-a", "b-ct", 0), ("pk-a", "a-ct", 1), ("pk-a", "b-ct", 0),
                             ("pk-b", "c-ct", 0)])
    assert strata == [PatientStratum("pk-a", "b-ct", 1), PatientStratum("pk-b", "c-ct", 0)]


def test_zero_fraction_splits_get_nobody():
    split = assign_splits(_patients(50), SplitFractions.parse("train=0.8,test=0.2"), seed=0)
    assert set(split.values()) == {Split.TRAIN, Split.TEST}


@pytest.mark.parametrize(("text", "message"), [
    ("train=0.5,test=0.2", "the fractions sum to 0.7; they must sum to 1"),
    ("train=0.8,tset=0.2", "'tset' is not a split; splits are train, val, calib, test"),
    ("train=0.8,test", "'test' is not of the form name=fraction"),
    ("train=1.2,test=-0.2", "test=-0.2 is negative"),
    ("train=0.5,train=0.5", "a split is named twice"),
])
def test_bad_fractions_are_one_clear_error(text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        SplitFractions.parse(text)
