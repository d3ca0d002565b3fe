"""`make demo`'s script end to end at its own sizes: the manifest is built from labels keyed
by accession, every route appears, certified guarantees on at least two device groups, and
one turn of the feedback loop ends with a second run that routes more than the first.

Slow: the whole demo (~10 minutes on 2 idle cores; README, "make demo")."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_demo(out: Path, printed: str) -> None:
    """What the demo promises (README, "make demo"), on its output folder and printout."""
    assert "labels keyed by accession, as a hospital's RIS export would be" in printed
    assert "SIMULATED reader decisions" in printed
    assert "| calibration | ece | all |" in printed  # the gate report is printed
    assert "mlflow ui --backend-store-uri" in printed
    assert "guarantee marginal, stratify auto, alpha 0.1" in printed  # the demo rules
    assert "In plain words" in printed
    labels = _rows(out / "labels_by_accession.csv")
    assert labels and all(r["accession_number"].startswith("SYNA") for r in labels)
    truth = {r["study_uid"]: r["label"] for r in _rows(out / "train_export" / "manifest.csv")}
    built = _rows(out / "manifest.csv")
    assert {r["study_uid"]: r["label"] for r in built} == truth
    assert "export_path" not in built[0]

    summaries = []
    for run, export in (("run", "incoming_export"), ("run2", "incoming_export_2")):
        incoming = {r["study_uid"] for r in _rows(out / export / "manifest.csv")}
        rows = _rows(out / run / "worklist.csv")
        assert {r["study_uid"] for r in rows} == incoming and len(rows) == len(incoming)
        summary = json.loads((out / run / "run_summary.json").read_text(encoding="utf-8"))
        assert summary["route"].get("urgent", 0) > 0 and summary["route"].get("routine", 0) > 0
        assert summary["guarantee"]  # the labels of the certificates that routed
        assert all(r["guarantee"] for r in rows if r["route"] in ("urgent", "routine"))
        summaries.append((summary, rows))
    every = [r for _, rows in summaries for r in rows]
    assert {r["route"] for r in every} == {"urgent", "routine", "review", "failed"}
    review_rules = {r["rule_ids"].split("; ")[0] for r in every if r["route"] == "review"}
    assert review_rules - {"uncertified-device"}
    certified = {r["device_group"] for r in every if r["route"] in ("urgent", "routine")}
    assert len(certified) >= 2

    loop = json.loads((out / "loop_summary.json").read_text(encoding="utf-8"))
    assert loop["second"]["model_version"] != loop["first"]["model_version"]
    assert loop["second"]["routed"] > loop["first"]["routed"]


@pytest.mark.slow
def test_demo_end_to_end_with_one_turn_of_the_feedback_loop(tmp_path, monkeypatch, capsys):
    from triage.demo import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["--out", str(tmp_path / "demo")]) == 0
    check_demo(tmp_path / "demo", capsys.readouterr().out)
