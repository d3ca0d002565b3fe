"""`triage run`: JSON summary, model URIs with aliases, default rules, exit codes."""

from __future__ import annotations

import json

import pytest

from triage.cli import main
from triage.run.worklist import read_worklist


def test_run_with_a_bundle_folder_prints_a_json_summary(run_case, tiny_model, rules_path,
                                                        tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(run_case.export_dir), "--model", str(tiny_model.bundle_dir),
                 "--out", str(out), "--rules", str(rules_path), "--workers", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["studies"] == 7 and summary["processed"] == 7
    assert sum(summary["route"].values()) == 7
    assert sum(sum(c.values()) for c in summary["device_group"].values()) == 7
    assert summary["model_name"] == "bundle" and summary["rules"] == str(rules_path)
    rows = read_worklist(out / "worklist.csv")
    # a bundle without fitted thresholds certifies nothing: scored studies are reviewed
    scored = [r for r in rows if r.p_calibrated]
    assert scored and all(r.route == "review" for r in scored)
    assert all("uncertified-device" in r.rule_ids or "unseen-device" in r.rule_ids
               for r in scored)


def test_run_resolves_a_registered_alias_to_its_version(run_case, tiny_model, rules_path,
                                                        tmp_path, capsys, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_model.tracking_uri)
    client = mlflow.MlflowClient(tiny_model.tracking_uri, tiny_model.tracking_uri)
    client.create_registered_model("tiny-run")
    version = client.create_model_version("tiny-run", tiny_model.model_uri)
    client.set_registered_model_alias("tiny-run", "champion", version.version)
    code = main(["run", str(run_case.export_dir), "--model", "models:/tiny-run@champion",
                 "--out", str(tmp_path / "out"), "--rules", str(rules_path), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["model_name"], summary["model_version"]) == ("tiny-run", "1")


@pytest.fixture
def corrupt_only(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.dcm").write_bytes(b"")
    (export / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk" * 4)
    return export


def test_exit_code_1_when_every_study_failed_with_default_rules(corrupt_only, tiny_model,
                                                                tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(corrupt_only), "--model", str(tiny_model.bundle_dir),
                 "--out", str(out), "--workers", "1"])
    assert code == 1
    captured = capsys.readouterr()
    assert "Studies per route" in captured.out and "Routes per device group" in captured.out
    assert "No study could be triaged" in captured.err
    rows = read_worklist(out / "worklist.csv")
    assert [r.study_uid for r in rows] == ["unreadable:a.dcm", "unreadable:b.dcm"]
    assert all(r.route == "failed" and r.rules_version.startswith("default@") for r in rows)
    assert "zero-length" in rows[0].reasons


def test_exit_code_2_for_a_missing_export_or_model(tiny_model, tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope"), "--model", str(tiny_model.bundle_dir),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "nope does not exist or is not a folder" in capsys.readouterr().err
    code = main(["run", str(tmp_path), "--model", str(tmp_path), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "bundle.json" in capsys.readouterr().err
