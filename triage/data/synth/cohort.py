"""The cohort plan: which patient each study belongs to, its label, device and split.

Studies are numbered in patient order; some patients have two studies. Labels are drawn
per study from their own stream (so they are independent of the device, which rotates
round-robin over the configured devices). Splits are assigned per patient with exact
quotas, so studies of one patient never straddle two splits.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.data.synth.config import SynthConfig
from triage.data.synth.devices import DeviceProfile
from triage.data.synth.identity import Stream, patient_id, patient_key, rng_for


@dataclass(frozen=True)
class StudySlot:
    """One planned study.

    Attributes:
        index: study number in the export (0-based).
        patient: patient number (0-based).
        visit: study number of that patient (0-based).
        device: the scanner profile.
        label: 1 when the study carries lesions.
        patient_key: manifest pseudonym of the patient.
        split: train / val / calib / test.
    """

    index: int
    patient: int
    visit: int
    device: DeviceProfile
    label: int
    patient_key: str
    split: str


def assign_splits(seed: int, n_patients: int, splits: tuple[tuple[str, float], ...],
                  ) -> list[str]:
    """Split per patient: a seeded ranking cut at largest-remainder quotas.

    Every split with a positive fraction gets at least one patient when there are enough
    patients.
    """
    wanted = [(name, frac) for name, frac in splits if frac > 0]
    raw = [frac * n_patients for _, frac in wanted]
    quotas = [int(v) for v in raw]
    by_remainder = sorted(range(len(wanted)), key=lambda i: (quotas[i] - raw[i], i))
    for i in by_remainder[: n_patients - sum(quotas)]:
        quotas[i] += 1
    for i, quota in enumerate(quotas):
        if quota == 0 and n_patients >= len(wanted):
            donor = max(range(len(quotas)), key=lambda j: quotas[j])
            quotas[donor] -= 1
            quotas[i] = 1
    order = sorted(range(n_patients), key=lambda p: rng_for(seed, Stream.SPLIT, p).uniform())
    assigned = [""] * n_patients
    position = 0
    for (name, _), quota in zip(wanted, quotas, strict=True):
        for p in order[position:position + quota]:
            assigned[p] = name
        position += quota
    return assigned


def plan_cohort(config: SynthConfig) -> tuple[StudySlot, ...]:
    """Plan every study of the export: patients, visits, labels, devices and splits."""
    planned: list[tuple[int, int, int]] = []  # (patient, visit, label)
    patient = 0
    while len(planned) < config.studies:
        u = rng_for(config.seed, Stream.VISITS, patient).uniform()
        for visit in range(2 if u < config.repeat_patient_fraction else 1):
            if len(planned) == config.studies:
                break
            u = rng_for(config.seed, Stream.LABEL, patient, visit).uniform()
            planned.append((patient, visit, int(u < config.prevalence)))
        patient += 1
    splits = assign_splits(config.seed, patient, config.splits)
    devices = config.devices
    return tuple(
        StudySlot(index=i, patient=p, visit=v, device=devices[i % len(devices)], label=label,
                  patient_key=patient_key(config.seed, patient_id(p)), split=splits[p])
        for i, (p, v, label) in enumerate(planned)
    )
