"""Feedback fixtures: runs written by the real router and journal, and reviewed CSVs.

`make_run` routes seeded synthetic studies (score, device, QC verdict) with the default
rules, hand-set certified thresholds and the random audit, journals the rows with
`triage.run.journal.Journal` and writes the worklists, exactly as `triage run` does after
the model. The end-to-end test (`test_loop.py`) uses DICOM, a trained model and MLflow.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from triage.route.rules import DEFAULT_RULES

DEVICES = ("acme", "borealis")
MODEL = "tumour"


@dataclass(frozen=True)
class Run:
    """A run folder and what the test knows about its studies.

    Attributes:
        out: the ``--out`` folder (journal.jsonl, worklist.csv, review_worklist.csv).
        rows: the worklist rows.
        truth: study UID -> 0/1 finding.
        identifiers: every patient ID, accession number and study date in the rows.
    """

    out: Path
    rows: list
    truth: dict[str, int]
    identifiers: frozenset[str]


def route_studies(n: int, *, fraction: float, seed: int, rng_seed: int = 0,
                  temperature: float = 1.0, version: str = "1", true_temperature: float = 2.0,
                  t_low: float = 0.2, t_high: float = 0.8, qc_every: int = 11,
                  uid_prefix: str = "1.2.826.0.1.3680043.10.9"):
    """Worklist rows of `n` studies routed by the default rules (+ audit) and their truth.

    Logit differences d ~ N(0, 3); the finding is Bernoulli(sigmoid(d / true_temperature));
    the run reports p = sigmoid(d / temperature). Every `qc_every`-th study has a tilted
    series (QC review), study 5 failed ingest.
    """
    from triage.route import FittedThresholds, GroupThresholds, Router, load_rules
    from triage.route.audit import with_audit
    from triage.route.types import StudyEvidence
    from triage.run.worklist import WorklistRow

    config = load_rules(DEFAULT_RULES).thresholds
    routing = FittedThresholds(config, {g: GroupThresholds(g, 300, 300, t_low=t_low,
                                                           t_high=t_high)
                                        for g in DEVICES}).to_dict()
    router = with_audit(Router.from_yaml(DEFAULT_RULES, routing, DEVICES), fraction, seed)
    rng = np.random.default_rng(rng_seed)
    d = rng.normal(0, 3, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-d / true_temperature))).astype(int)
    rows, truth = [], {}
    for i in range(n):
        uid = f"{uid_prefix}.{i + 1}"
        device = DEVICES[i % 2]
        p = float(1 / (1 + np.exp(-d[i] / temperature)))
        ok = i != 5
        evidence = StudyEvidence(uid, device, "CT", ingest_ok=ok,
                                 ingest_reasons="" if ok else "no usable series",
                                 verdict="tilt" if i % qc_every == 3 else "ok", n_slices=64,
                                 p_calibrated=p if ok else None, input_distance=0.05,
                                 matrix=(64, 64, 64), intensity_std=300.0,
                                 body_fraction=0.4)
        decision = router.route(evidence)
        rows.append(WorklistRow(
            study_uid=uid, accession_number=f"ACCQ{i:05d}", patient_id=f"PIDQ{i:05d}",
            study_date=f"1987{(i % 12) + 1:02d}15", modality="CT", device_group=device,
            route=str(decision.route), priority=decision.priority,
            p_calibrated=f"{p:.6f}" if ok else "", reasons="; ".join(decision.reasons),
            rule_ids="; ".join(decision.rule_ids), ingest_status="ok" if ok else "failed",
            model_name=MODEL, model_version=version, temperature=f"{temperature:.6g}",
            rules_version=router.version, processed_at=f"2025-03-{1 + i % 28:02d}T10:00:00"))
        truth[uid] = int(y[i])
    return rows, truth, router


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Run]:
    """Factory: ``make_run(name="out", n=60, fraction=0.0, seed=0, **route_studies)``."""
    from triage.run.journal import JOURNAL_NAME, Journal
    from triage.run.worklist import write_worklists

    def make(name: str = "out", n: int = 60, fraction: float = 0.0, seed: int = 0,
             **kwargs) -> Run:
        rows, truth, router = route_studies(n, fraction=fraction, seed=seed, **kwargs)
        out = tmp_path / name
        journal = Journal(out / JOURNAL_NAME, identity={
            "model_created_utc": "2025-01-01T00:00:00+00:00", "code_version": "test",
            "temperature": rows[0].temperature, "rules_version": router.version,
            "preprocess": "test"})
        journal.append(rows)
        write_worklists(rows, out)
        ids = {v for r in rows for v in (r.patient_id, r.accession_number, r.study_date)}
        return Run(out, rows, truth, frozenset(ids))

    return make


def write_reviewed(path: Path, source: Path, truth: dict[str, int], *,
                   skip: frozenset[str] = frozenset(), reader: str = "rad-0042",
                   read_date: str = "2025-03-30", words: tuple[str, str] = ("negative",
                                                                           "positive")
                   ) -> Path:
    """The worklist CSV `source` with the reader's columns added (finding from `truth`;
    studies in `skip` left undecided)."""
    with open(source, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [*rows[0].keys(), "finding", "reader", "read_date"] if rows else ["study_uid"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            uid = row["study_uid"]
            decided = uid not in skip
            writer.writerow({**row, "finding": words[truth[uid]] if decided else "",
                             "reader": reader, "read_date": read_date})
    return path
