"""Assign patients to splits: by patient, stratified by device group and label, deterministic.

Each patient belongs to one stratum, (device group, label): the device group most of its
studies were made on and 1 when any of its studies is positive. Within a stratum patients
are ordered by a seeded hash of their key (so a patient's place does not depend on who
else is in the export) and dealt to the splits whose share of the stratum is furthest
below target.

Targets per stratum are the split fractions of the stratum's size, rounded so that the
rounding errors carried from one stratum to the next stay below one patient per split
overall. For positive strata the calibration split is served first and rounded *up*:
certified routing thresholds need calibration positives per device group (299 at
alpha = 1 %, delta = 5 %), the scarcest thing in a manifest.

Patients already assigned (an existing manifest being extended) keep their split; they
count towards the targets, and only new patients are dealt.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from triage.data.manifest import Split
from triage.errors import ConfigError

DEFAULT_SPLITS = "train=0.6,val=0.1,calib=0.15,test=0.15"
#: The order in which ties are broken: calibration first (see the module docstring).
_PRIORITY = (Split.CALIB, Split.TRAIN, Split.TEST, Split.VAL)


@dataclass(frozen=True)
class SplitFractions:
    """The fraction of patients each split should get; they sum to 1.

    Raises:
        ConfigError: an unknown split, a negative fraction, or a sum other than 1.

    Example:
        >>> SplitFractions.parse("train=0.8,test=0.2").of(Split.TEST)
        0.2
    """

    fractions: tuple[tuple[Split, float], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.fractions]
        if len(set(names)) != len(names):
            raise ConfigError(f"--splits: a split is named twice ({', '.join(names)}).")
        for name, fraction in self.fractions:
            if not fraction >= 0.0:
                raise ConfigError(f"--splits: {name}={fraction} is negative.")
        total = sum(f for _, f in self.fractions)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"--splits: the fractions sum to {total:g}; they must sum to 1 "
                              f"(e.g. '{DEFAULT_SPLITS}').")

    @classmethod
    def parse(cls, text: str) -> SplitFractions:
        """From ``"train=0.6,val=0.1,calib=0.15,test=0.15"``; unnamed splits get 0."""
        pairs: list[tuple[Split, float]] = []
        valid = ", ".join(s.value for s in Split)
        for item in (part.strip() for part in text.split(",") if part.strip()):
            name, sep, value = item.partition("=")
            try:
                split = Split(name.strip())
            except ValueError as err:
                raise ConfigError(f"--splits: '{name.strip()}' is not a split; splits are "
                                  f"{valid}.") from err
            try:
                if not sep:
                    raise ValueError(item)
                pairs.append((split, float(value)))
            except ValueError as err:
                raise ConfigError(f"--splits: '{item}' is not of the form name=fraction "
                                  f"(e.g. '{DEFAULT_SPLITS}').") from err
        return cls(tuple(pairs))

    def of(self, split: Split) -> float:
        """The fraction of `split` (0 when not named)."""
        return dict(self.fractions).get(split, 0.0)


@dataclass(frozen=True)
class PatientStratum:
    """A patient to split: its pseudonymous key, device group and label (see module doc)."""

    patient_key: str
    device_group: str
    label: int


def patient_strata(studies: Iterable[tuple[str, str, int]]) -> list[PatientStratum]:
    """One stratum per patient from (patient_key, device_group, label) per study.

    The device group is the one most of the patient's studies have (ties: the first in
    sorted order); the label is 1 when any study is positive.
    """
    devices: dict[str, Counter[str]] = {}
    labels: dict[str, int] = {}
    for key, device, label in studies:
        devices.setdefault(key, Counter())[device] += 1
        labels[key] = max(labels.get(key, 0), int(label))
    return [PatientStratum(key, min(counts, key=lambda d: (-counts[d], d)), labels[key])
            for key, counts in sorted(devices.items())]


def assign_splits(patients: Sequence[PatientStratum], fractions: SplitFractions, seed: int,
                  fixed: Mapping[str, str] | None = None) -> dict[str, Split]:
    """The split of every patient in `patients`.

    Args:
        patients: every patient, those already assigned included.
        fractions: the wanted split fractions.
        seed: orders patients within a stratum; equal inputs give equal splits.
        fixed: patient_key -> split of patients already assigned; they keep it.

    Returns:
        patient_key -> split.
    """
    fixed = fixed or {}
    strata: dict[tuple[str, int], list[PatientStratum]] = {}
    for patient in patients:
        strata.setdefault((patient.device_group, patient.label), []).append(patient)
    carry = {label: {s: 0.0 for s in Split} for label in (0, 1)}
    out: dict[str, Split] = {}
    for (_device, label), members in sorted(strata.items()):
        targets, carry[label] = _targets(len(members), fractions, carry[label],
                                         calib_first=label == 1)
        counts = Counter(Split(fixed[p.patient_key]) for p in members if p.patient_key in fixed)
        out.update((p.patient_key, Split(fixed[p.patient_key]))
                   for p in members if p.patient_key in fixed)
        new = sorted((p for p in members if p.patient_key not in fixed),
                     key=lambda p: _rank(seed, p.patient_key))
        open_splits = [s for s in _PRIORITY if fractions.of(s) > 0]
        for patient in new:
            split = max(open_splits, key=lambda s: targets[s] - counts[s])
            counts[split] += 1
            out[patient.patient_key] = split
    return out


def _targets(n: int, fractions: SplitFractions, carry: dict[Split, float], *,
             calib_first: bool) -> tuple[dict[Split, int], dict[Split, float]]:
    """Whole patients per split for a stratum of `n`, and the rounding error carried on."""
    exact = {s: fractions.of(s) * n for s in Split}
    targets = {s: 0 for s in Split}
    rest = n
    if calib_first and exact[Split.CALIB] > 0:
        targets[Split.CALIB] = min(n, math.ceil(exact[Split.CALIB] - 1e-9))
        rest = n - targets[Split.CALIB]
        others = sum(v for s, v in exact.items() if s is not Split.CALIB)
        exact = {s: (v * rest / others if others else 0.0) for s, v in exact.items()
                 if s is not Split.CALIB} | {Split.CALIB: float(targets[Split.CALIB])}
    shares = {s: v for s, v in exact.items() if not (calib_first and s is Split.CALIB)
              and fractions.of(s) > 0}
    for s, v in shares.items():
        targets[s] = math.floor(v)
    left = n - sum(targets.values())
    ranked = sorted(shares, key=lambda s: (-(carry[s] + exact[s] - targets[s]),
                                           _PRIORITY.index(s)))
    for s in ranked[:max(left, 0)]:
        targets[s] += 1
    new_carry = {s: carry[s] + exact[s] - targets[s] for s in Split}
    return targets, new_carry


def _rank(seed: int, patient_key: str) -> str:
    return hashlib.sha256(f"{seed}:{patient_key}".encode()).hexdigest()
