"""`make demo`'s script end to end on small exports: every stage runs, the model is promoted
or the gate report says why, and the worklist has exactly one row per incoming study."""

from __future__ import annotations

import csv

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end_with_one_worklist_row_per_incoming_study(tmp_path, monkeypatch,
                                                                        capsys):
    from triage.demo import run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    run(tmp_path / "demo", studies=30, incoming=8, seed=3, epochs=1)
    out = capsys.readouterr().out
    assert "| calibration | ece | all |" in out  # the gate report is printed
    assert "mlflow ui --backend-store-uri" in out
    assert "Certification of the model's routing thresholds:" in out
    assert "guarantee marginal, stratify auto, alpha 0.1" in out  # the demo rules
    with open(tmp_path / "demo" / "run" / "worklist.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    export = tmp_path / "demo" / "incoming_export"
    with open(export / "manifest.csv", newline="", encoding="utf-8") as fh:
        incoming = {row["study_uid"] for row in csv.DictReader(fh)}
    assert len(rows) == len(incoming) == 8
    assert {row["study_uid"] for row in rows} == incoming
    assert {row["route"] for row in rows} <= {"urgent", "routine", "review", "failed"}
