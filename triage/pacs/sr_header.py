"""The patient and study attributes an SR copies from its study, without the values DICOM
refuses, and quiet: no value of them reaches a log.

Real archives hold values an SR may not carry: PatientSex ``U`` or ``X`` (highdicom takes
``M``, ``F`` or ``O``), a birth date written ``1901-02-03``, a time ``25:00``, a 20-character
accession number. Such a value is left out of the SR (the attribute kept empty where the
SR needs it: "unknown"); none is ever replaced by a value of our own. pydicom's and
highdicom's warnings quote the values they dislike (a birth date, a patient's name): while
`quiet` holds they are collected, redacted, instead of reaching stderr or a log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from triage.dicom.pydicom_notes import capture_pydicom, redact

LOGGER = logging.getLogger(__name__)
PATIENT_SEX = frozenset({"M", "F", "O"})
"""The PatientSex values highdicom accepts (``PatientSexValues``); empty is "unknown"."""
SR_NEEDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
            "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")
"""Attributes highdicom reads from the evidence: present in the header, empty if unknown."""
_PARSED = ("DA", "TM", "DT")  # VRs highdicom turns into date/time objects


class _Collector(logging.Handler):
    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(redact(record.getMessage()))


@contextmanager
def quiet() -> Iterator[list[str]]:
    """Collect pydicom's and highdicom's warnings in the block, redacted, none to a log.

    Yields:
        The list of notes, complete once the block ends.
    """
    notes: list[str] = []
    logger = logging.getLogger("highdicom")
    handler, propagate = _Collector(notes), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    pydicom_notes: list[str] = []
    try:
        with capture_pydicom() as pydicom_notes:
            yield notes
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        notes.extend(pydicom_notes)


def _valid(keyword: str, vr: str, value: Any) -> bool:
    """Whether pydicom (strict) and highdicom take `value` for an SR header."""
    from pydicom import config
    from pydicom.multival import MultiValue
    from pydicom.valuerep import DA, DT, TM, validate_value

    if vr == "SQ" or value is None:
        return True
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    try:
        for one in values:
            validate_value(vr, one, config.RAISE)
            if vr in _PARSED and one:
                {"DA": DA, "TM": TM, "DT": DT}[vr](one)
    except (ValueError, TypeError, OverflowError):
        return False
    return keyword != "PatientSex" or not values or str(values[0]) in PATIENT_SEX | {""}


def study_header(attrs: dict) -> tuple[Any, list[str]]:
    """The study-level attributes of `attrs` (DICOM JSON) as a dataset fit for an SR, with
    the attributes highdicom reads present (empty where unknown or left out), and the
    keywords (or tags) of the attributes left out for a value DICOM refuses.

    Call it inside `quiet`: pydicom warns about what it parses, quoting the value.

    Example:
        >>> with quiet():
        ...     header, left_out = study_header({
        ...         "00100040": {"vr": "CS", "Value": ["U"]},
        ...         "00100030": {"vr": "DA", "Value": ["1901-02-03"]},
        ...         "00080020": {"vr": "DA", "Value": ["20240102"]}})
        >>> left_out, header.PatientSex, header.PatientBirthDate, header.StudyDate
        (['PatientBirthDate', 'PatientSex'], '', '', '20240102')
    """
    from pydicom import Dataset
    from pydicom.datadict import keyword_for_tag

    header, left_out = Dataset(), []
    for tag, element in sorted(attrs.items()):
        try:
            parsed = next(iter(Dataset.from_json({tag: element})))
            keep = _valid(parsed.keyword, parsed.VR, parsed.value)
        except Exception:  # noqa: BLE001 - a malformed element is left out, whatever broke
            keep = False
        if keep:
            header.add(parsed)
        else:
            left_out.append(keyword_for_tag(int(tag, 16)) or tag if _is_tag(tag) else tag)
    for keyword in SR_NEEDS:
        if keyword not in header:
            setattr(header, keyword, "")
    return header, left_out


def _is_tag(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text)
