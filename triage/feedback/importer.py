"""`import_reviews`: join a reviewed worklist with its run's journal into the label store.

The reviewed CSV says which study had a finding; the run's journal (``OUT/journal.jsonl``)
says which model version scored it, with what calibrated probability, on which device
group, and why it was routed. Only those fields and the decision reach the store: the
worklist's patient ID, accession number and study date are never read from either file.
A reader id is stored as a pseudonym (``reader-`` + 12 hex digits of its SHA-256), which
keeps per-reader analyses possible without a name in the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.feedback.decisions import read_review_file
from triage.feedback.errors import ReviewFileError
from triage.feedback.store import Conflict, Label, LabelStore, SampledStudy
from triage.route.audit import AUDIT_RULE_ID, AuditDesign, in_sample
from triage.run.journal import JOURNAL_NAME, read_journal
from triage.run.worklist import WorklistRow


@dataclass(frozen=True)
class ImportResult:
    """What one import did.

    Attributes:
        decisions: decided rows in the file.
        undecided: rows with an empty finding (skipped).
        added: new labels stored.
        unchanged: decisions already stored with the same finding (idempotent).
        conflicts: decisions that disagree with a stored label (kept apart, not stored).
        audit: new labels of studies sent to review by the random audit.
        sampled: new labels of studies in their run's calibration sample.
        run_key: the run's key in the store.
    """

    decisions: int
    undecided: int
    added: int
    unchanged: int
    conflicts: list[Conflict] = field(default_factory=list)
    audit: int = 0
    sampled: int = 0
    run_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (conflicts by study UID, model version and findings)."""
        return {"decisions": self.decisions, "undecided": self.undecided,
                "added": self.added, "unchanged": self.unchanged,
                "conflicts": len(self.conflicts), "audit": self.audit,
                "sampled": self.sampled, "run_key": self.run_key,
                "conflicting": [{"study_uid": c.study_uid, "model_version": c.model_version,
                                 "stored": c.stored_finding, "new": c.new_finding,
                                 "row": c.source_row} for c in self.conflicts]}


def reader_pseudonym(reader: str) -> str:
    """``reader-<12 hex>`` for a reader id, empty for none.

    Example:
        >>> reader_pseudonym("dr-17")[:7], reader_pseudonym("")
        ('reader-', '')
    """
    if not reader:
        return ""
    return "reader-" + hashlib.sha256(reader.encode("utf-8")).hexdigest()[:12]


def run_key(header: dict[str, Any], run_dir: Path) -> str:
    """A stable key of one run: its journal header and its folder."""
    text = json.dumps(header, sort_keys=True) + "\n" + str(run_dir.resolve())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _number(text: str) -> float | None:
    return float(text) if text else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sampled(row: WorklistRow, design: AuditDesign) -> bool:
    return bool(row.p_calibrated) and in_sample(row.study_uid, design.fraction, design.seed)


def import_reviews(review_csv: Path | str, run_dir: Path | str,
                   store: Path | str) -> ImportResult:
    """Store the decisions of `review_csv` for the studies of the run in `run_dir`.

    Args:
        review_csv: the reviewed worklist (`triage.feedback.decisions`).
        run_dir: the ``--out`` folder of the `triage run` that produced it.
        store: the label store file (created when missing).

    Returns:
        What was added, what was already there, and the conflicts.

    Raises:
        ReviewFileError: bad file, or a study that is not in the run.
        JournalError: `run_dir` holds no readable journal.
        LabelStoreError: `store` is not a label store.
    """
    review = read_review_file(review_csv)
    run_dir = Path(run_dir)
    header, rows = read_journal(run_dir / JOURNAL_NAME)
    for decision in review.decisions:
        if decision.study_uid not in rows:
            raise ReviewFileError(review.path, decision.row, "study_uid",
                                  f"study {decision.study_uid} is not in the run {run_dir} "
                                  f"({JOURNAL_NAME}); import the reviewed worklist together "
                                  f"with the --run folder that triaged it.")
    design = AuditDesign.parse(str(header.get("rules_version", "")))
    key = run_key(header, run_dir)
    source = hashlib.sha256(review.path.read_bytes()).hexdigest()
    at = _now()
    sample = [SampledStudy(key, r.study_uid, r.model_name, r.model_version, r.rule_ids)
              for r in rows.values() if _sampled(r, design)]
    labels = []
    for decision in review.decisions:
        row = rows[decision.study_uid]
        labels.append((Label(
            study_uid=row.study_uid, model_name=row.model_name,
            model_version=row.model_version, finding=decision.finding,
            reader=reader_pseudonym(decision.reader), read_date=decision.read_date,
            device_group=row.device_group, route=row.route, rule_ids=row.rule_ids,
            p_calibrated=_number(row.p_calibrated), temperature=_number(row.temperature),
            rules_version=row.rules_version,
            audit=row.rule_ids.split("; ")[0] == AUDIT_RULE_ID,
            sampled=_sampled(row, design), run_key=key, processed_at=row.processed_at,
            imported_at=at, source_sha256=source), decision.row))
    with LabelStore(store) as db:
        db.add_run(key, design.rules_version, design.fraction, design.seed, at, sample)
        added, same, conflicts = db.add_labels(labels, at)
    return ImportResult(len(review.decisions), review.undecided, len(added), same, conflicts,
                        audit=sum(lb.audit for lb in added),
                        sampled=sum(lb.sampled for lb in added), run_key=key)
