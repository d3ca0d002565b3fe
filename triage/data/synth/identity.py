"""Synthetic, obviously fake identifiers: names, IDs, dates, accessions and UIDs.

Everything derives from the seed and the (patient, visit) indices, never from the wall
clock. `patient_key` is the manifest pseudonym: a keyed hash of the PatientID, so the
manifest never carries the ID itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from enum import IntEnum

import numpy as np

from triage.data.synth.dicom_writer import StudyHeader, make_uid

_EPOCH = dt.date(2023, 1, 2)
UID_NAMESPACE = "triage-synth"


class Stream(IntEnum):
    """Independent random streams; a study draws from ``(seed, stream, patient, visit)``."""

    VISITS = 1
    LABEL = 2
    SPLIT = 3
    ANATOMY = 4
    STUDY = 5
    FINDINGS = 6
    NOISE = 7
    IDENTITY = 8


def rng_for(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """A generator that depends only on the seed, the stream and the key."""
    return np.random.default_rng([seed, int(stream), *key])


def patient_id(patient: int) -> str:
    """PatientID of patient index `patient` (0-based), e.g. ``SYN-000007``."""
    return f"SYN-{patient + 1:06d}"


def patient_key(seed: int, pid: str) -> str:
    """The manifest pseudonym: an HMAC-SHA256 of the PatientID keyed by the seed."""
    digest = hmac.new(f"{UID_NAMESPACE}:{seed}".encode(), pid.encode(), hashlib.sha256)
    return f"pk-{digest.hexdigest()[:16]}"


def study_uid(seed: int, patient: int, visit: int) -> str:
    """StudyInstanceUID of a (patient, visit)."""
    return str(make_uid(UID_NAMESPACE, seed, "study", patient, visit))


def study_header(seed: int, patient: int, visit: int, index: int) -> StudyHeader:
    """Patient and study tags of one study; visit 1 is 30-400 days after visit 0."""
    rng = rng_for(seed, Stream.IDENTITY, patient)
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 60)))
    sex = "F" if rng.uniform() < 0.5 else "M"
    # Draw every visit's values so that visit k does not depend on how many there are.
    days = np.cumsum([rng.integers(0, 540), *rng.integers(30, 400, size=visit)])
    hours = rng.integers(7, 19, size=visit + 1)
    minutes = rng.integers(0, 60, size=visit + 1)
    day = int(days[visit])
    study_time = f"{int(hours[visit]):02d}{int(minutes[visit]):02d}00"
    return StudyHeader(
        study_uid=study_uid(seed, patient, visit),
        patient_name=f"SYNTH^PATIENT{patient + 1:04d}",
        patient_id=patient_id(patient),
        patient_birth_date=birth.strftime("%Y%m%d"),
        patient_sex=sex,
        accession_number=f"SYNA{index + 1:08d}",
        study_date=(_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d"),
        study_time=study_time,
        study_id=str(visit + 1),
        study_description="CT ABDOMEN SYNTHETIC",
        institution_name="Synthetic General Hospital",
    )
