"""What an SR needs of a study once its files are gone: patient and study attributes, and
the instances of each series (to reference the evidence).

Kept per study in ``OUT/headers/<study UID>.json`` when the study is staged. These files
carry patient identifiers, like the worklist and the journal: keep them beside those.
``OUT/headers/<study UID>.sr.json`` lists the SRs stored for the study (series and SOP
Instance UIDs, oldest first), so that a new one can name the one it replaces.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from triage.dicom.scan.grouping import StudyGroup
from triage.io import atomic_write_text

HEADERS_DIR = "headers"
STUDY_KEYWORDS = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                  "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                  "AccessionNumber", "ReferringPhysicianName", "StudyDescription")


def _name(study_uid: str) -> str:
    if re.fullmatch(r"[0-9.]{1,64}", study_uid):
        return study_uid
    return hashlib.sha256(study_uid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class HeaderStore:
    """Study headers by Study Instance UID under ``out_dir/headers``."""

    def __init__(self, out_dir: Path | str) -> None:
        self.root = Path(out_dir) / HEADERS_DIR

    def path(self, study_uid: str) -> Path:
        return self.root / f"{_name(study_uid)}.json"

    def save(self, study_uid: str, study: dict, series: dict[str, list[list[str]]]) -> None:
        """Record `study` (DICOM JSON of the study-level attributes) and `series`
        (series UID -> ``[SOP Class UID, SOP Instance UID]`` pairs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(study_uid), json.dumps(
            {"study_uid": study_uid, "study": study, "series": series}))

    def save_group(self, study: StudyGroup) -> None:
        """Record a staged study from its files (one header read)."""
        import pydicom

        series = {uid: [[r.sop_class_uid, r.sop_instance_uid] for r in records
                        if r.ok and r.sop_class_uid and r.sop_instance_uid]
                  for uid, records in study.series.items()}
        first = next((r for records in study.series.values() for r in records if r.ok), None)
        attrs: dict = {}
        if first is not None:
            ds = pydicom.dcmread(first.path, stop_before_pixels=True,
                                 specific_tags=list(STUDY_KEYWORDS))
            attrs = ds.to_json_dict()
        self.save(study.study_uid, attrs, {k: v for k, v in series.items() if v})

    def save_sent(self, study_uid: str, series_uid: str, sop_uid: str) -> None:
        """Record that the SR `sop_uid` (of series `series_uid`) of the study is stored."""
        sent = [pair for pair in self.sent(study_uid) if pair[1] != sop_uid]
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(study_uid).with_suffix(".sr.json"),
                          json.dumps({"sent": [*sent, [series_uid, sop_uid]]}))

    def sent(self, study_uid: str) -> list[list[str]]:
        """The SRs stored for the study, ``[series UID, SOP Instance UID]``, oldest first."""
        try:
            record = json.loads(self.path(study_uid).with_suffix(".sr.json")
                                .read_text(encoding="utf-8"))
            return [[str(a), str(b)] for a, b in record["sent"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def load(self, study_uid: str) -> dict | None:
        """The record of `study_uid`, or None."""
        try:
            return json.loads(self.path(study_uid).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
