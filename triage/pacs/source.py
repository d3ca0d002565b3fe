"""The source interface: something that finds studies and stages their files one by one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from triage.errors import TriageError


class RetrievalError(TriageError):
    """One study could not be retrieved after retries; the study gets a ``failed`` row.

    Attributes:
        study_uid: the study.
        status: the HTTP status (or DIMSE status) the server answered, None if none.
    """

    def __init__(self, study_uid: str, message: str, status: int | None = None) -> None:
        self.study_uid, self.status = study_uid, status
        super().__init__(message)


@dataclass(frozen=True)
class StudyRef:
    """A study a source found, before its files are fetched.

    Attributes:
        study_uid: Study Instance UID.
        patient_id, accession_number, study_date: identifiers for the worklist only.
        attributes: study-level DICOM attributes (DICOM JSON) as the source listed them,
            kept for the SR of a study whose files could not be fetched.
    """

    study_uid: str
    patient_id: str = ""
    accession_number: str = ""
    study_date: str = ""
    attributes: dict = field(default_factory=dict, compare=False, repr=False)


class Source(Protocol):
    """Finds studies (`find`) and stages the files of one (`stage`)."""

    description: str

    def find(self) -> Sequence[StudyRef]:
        """The studies to triage, each once, in a stable order.

        Raises:
            EnvironmentalError: the server cannot be reached (after retries).
        """

    def stage(self, study: StudyRef, folder: Path) -> Path:
        """Write the study's instances under `folder` (created); return it.

        Raises:
            RetrievalError: the server refused this study (after retries).
            EnvironmentalError: the server cannot be reached (after retries).
        """
