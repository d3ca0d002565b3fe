"""End to end on DICOM, a trained model and a real SQLite MLflow: run with audit -> import
the readers' decisions -> recalibrate -> promote -> run with the new champion.

The rules are the default ones with thresholds a handful of studies can certify (alpha 0.5,
3 positives): the point is the plumbing, not the strength of the guarantee.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.feedback.conftest import DEFAULT_RULES, write_reviewed
from triage.cli import main
from triage.train.tiny import EXPORT, train_tiny

NAME = "loop"


def _lax_rules(path: Path) -> Path:
    rules = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    rules["name"] = "feedback-test"
    rules["thresholds"] = {"alpha": 0.5, "delta": 0.2, "ppv_target": 0.5, "min_positives": 3,
                           "min_negatives": 3, "min_urgent_count": 3}
    for rule in rules["rules"]:
        if rule["kind"] == "min-slices":
            rule["min_slices"] = 4
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """Version 1 of NAME, trained on a 14-study export and promoted to @champion."""
    from triage.registry.gates import GateConfig
    from triage.registry.promotion import promote, register_version

    root = tmp_path_factory.mktemp("feedback-loop")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    rules = _lax_rules(root / "rules.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        outcome, manifest = train_tiny(root, experiment="test-feedback", tracking_uri=uri,
                                       rules_path=rules)
        ingest_dir = root / "ingest"
        version = register_version(outcome.run_id, NAME, tracking_uri=uri)
        first = promote(NAME, version, manifest_path=manifest,
                        ingest_dir=ingest_dir, tracking_uri=uri,
                        gates=GateConfig(max_ece=1.0, max_miss_rate=1.0,
                                         require_certified=False))
    assert first.promoted
    gates = root / "gates.yaml"
    gates.write_text("max_ece: 1.0\nmax_miss_rate: 1.0\nrequire_certified: true\n")
    return {"root": root, "uri": uri, "manifest": manifest, "ingest": ingest_dir,
            "gates": gates}


def _truth(manifest: Path) -> dict[str, int]:
    with open(manifest, encoding="utf-8", newline="") as fh:
        return {row["study_uid"]: int(row["label"]) for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_import_recalibrate_promote_run(champion, tmp_path, monkeypatch, capsys):
    from triage.data.synth import SynthConfig, generate_export
    from triage.feedback.store import LabelStore
    from triage.run.worklist import read_worklist

    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion["uri"])
    monkeypatch.chdir(tmp_path)
    site = generate_export(tmp_path / "site", SynthConfig(studies=32, seed=21, **EXPORT))
    out = tmp_path / "run-1"
    model = f"models:/{NAME}@champion"
    assert main(["run", str(site.out_dir), "--model", model, "--out", str(out),
                 "--workers", "1", "--audit-fraction", "1", "--json"]) == 0
    first_run = json.loads(capsys.readouterr().out)
    assert first_run["model_version"] == "1"
    assert first_run["rules_version"].endswith("+audit=1:seed=0")

    store = tmp_path / "labels.sqlite"
    reviewed = write_reviewed(tmp_path / "reviewed.csv", out / "review_worklist.csv",
                              _truth(site.manifest_path))
    assert main(["feedback", "import", str(reviewed), "--run", str(out), "--store",
                 str(store), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["added"] > 0 and imported["conflicts"] == 0

    assert main(["recalibrate", "--model", model, "--labels", str(store), "--json"]) == 0
    recal = json.loads(capsys.readouterr().out)
    assert (recal["name"], recal["parent"], recal["version"]) == (NAME, "1", "2")
    assert recal["n_labels"] == imported["sampled"]
    assert any(d["certified"] for d in recal["devices"].values())
    tags = mlflow.MlflowClient(champion["uri"], champion["uri"]).get_model_version(
        NAME, "2").tags
    assert tags["lineage.parent_version"] == "1" and tags["lineage.root_version"] == "1"
    assert tags["lineage.labels"] == str(recal["n_labels"])
    assert tags["lineage.kept"] == str(recal["kept"]) == str(
        sum(d["n"] for d in recal["devices"].values() if not d["consumed"]))
    assert tags["lineage.window_start"] <= tags["lineage.window_end"]
    assert float(tags["calibration.temperature"]) == pytest.approx(recal["temperature"])
    with LabelStore(store) as db:
        assert set(db.consumed().values()) == {"2"}
    # the same labels never calibrate twice
    assert main(["recalibrate", "--model", model, "--labels", str(store)]) == 2
    assert "no unused labels" in capsys.readouterr().err

    assert main(["promote", "--name", NAME, "--version", "2", "--manifest",
                 str(champion["manifest"]), "--ingest", str(champion["ingest"]),
                 "--gates", str(champion["gates"])]) == 0
    assert "promoted loop v2" in capsys.readouterr().out

    second = tmp_path / "run-2"
    assert main(["run", str(site.out_dir), "--model", model, "--out", str(second),
                 "--workers", "1", "--json"]) == 0
    capsys.readouterr()
    rows = read_worklist(second / "worklist.csv")
    scored = [r for r in rows if r.p_calibrated]
    assert scored and {r.model_version for r in scored} == {"2"}
    assert all(float(r.temperature) == pytest.approx(recal["temperature"], rel=1e-5)
               for r in scored)
    assert any(r.route in ("urgent", "routine") for r in scored)
