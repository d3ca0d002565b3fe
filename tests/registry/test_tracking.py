"""Tracking helpers against a real SQLite-backed MLflow: URIs, params, metrics, tags,
artifacts, the de-identified manifest dataset and the identifier guard."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from triage.registry.tracking import (
    DEIDENTIFIED_COLUMNS,
    MAX_PARAM_VALUE,
    TRUNCATION_MARKER,
    IdentifierLeakError,
    TrackingError,
    check_no_identifiers,
    client_for,
    resolve_tracking_uri,
    sqlite_path,
    start_run,
)


def test_resolve_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_sqlite_path():
    assert sqlite_path("sqlite:////data/mlflow.db") == Path("/data/mlflow.db")
    assert sqlite_path("http://host:5000") is None
    assert sqlite_path("sqlite://") is None


def test_params_metrics_tags_round_trip(mlflow_uri):
    params = {f"p.{i:03d}": i for i in range(230)}  # three batches
    params.update({"list": [1, 2.5], "long": "x" * (MAX_PARAM_VALUE + 50), "none": None})
    with start_run("tracking", run_name="round-trip", tags={"purpose": "test"}) as run:
        run.log_params(params)
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1), "auroc.cygnus": float("nan")}, step=step)
        run.set_tags({"stage": "unit", "n": 3})
    client = client_for()
    data = client.get_run(run.run_id).data
    assert data.params["p.229"] == "229" and len(data.params) == 233
    assert data.params["list"] == "[1, 2.5]" and data.params["none"] == "None"
    assert len(data.params["long"]) == MAX_PARAM_VALUE
    assert data.params["long"].endswith(TRUNCATION_MARKER)
    history = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    assert all(math.isnan(m.value) for m in client.get_metric_history(run.run_id,
                                                                       "auroc.cygnus"))
    assert data.tags["purpose"] == "test" and data.tags["stage"] == "unit"
    assert data.tags["n"] == "3" and data.tags["mlflow.runName"] == "round-trip"
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_bad_metric_and_key_are_named(mlflow_uri):
    with start_run("tracking") as run:
        with pytest.raises(TrackingError, match="Metric 'acc' is 'high', not a number"):
            run.log_metrics({"acc": "high"})
        with pytest.raises(TrackingError, match="has 251 characters; MLflow allows 250"):
            run.log_params({"k" * 251: 1})


def test_failed_block_marks_run_failed_and_restores_globals(mlflow_uri):
    import mlflow

    with pytest.raises(RuntimeError, match="boom"):
        with start_run("tracking") as run:
            assert mlflow.active_run().info.run_id == run.run_id
            raise RuntimeError("boom")
    assert mlflow.active_run() is None
    assert client_for().get_run(run.run_id).info.status == "FAILED"
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_uri
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_nested_run_has_parent(mlflow_uri):
    with start_run("tracking", run_name="lodo") as parent:
        with start_run("tracking", run_name="held-out-acme", nested=True) as child:
            pass
    tags = client_for().get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_artifacts_table_json_figure_directory(mlflow_uri, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots()
    ax.bar(["acme", "borealis"], [0.8, 0.7])
    png = tmp_path / "bars.png"
    fig.savefig(png)
    folder = tmp_path / "extra"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    with start_run("tracking") as run:
        run.log_table(pd.DataFrame({"device": ["acme"], "auroc": [0.8]}),
                      "tables/per_device.csv")
        run.log_json({"ece": np.float32(0.25), "bins": np.arange(3)}, "summary.json")
        run.log_figure(png)
        run.log_figure(fig, name="confusion.png")
        run.log_artifacts(folder, "extra")
        with pytest.raises(TrackingError, match="must be a relative path inside the run"):
            run.log_json({}, "../escape.json")
        with pytest.raises(TrackingError, match="does not exist"):
            run.log_figure(tmp_path / "missing.png")
    plt.close(fig)
    import mlflow

    out = Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, dst_path=str(tmp_path / "dl"),
                                                   tracking_uri=mlflow_uri))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["extra/sub/a.txt", "figures/bars.png", "figures/confusion.png",
                     "summary.json", "tables/per_device.csv"]
    assert json.loads((out / "summary.json").read_text()) == {"bins": [0, 1, 2], "ece": 0.25}
    assert pd.read_csv(out / "tables/per_device.csv")["auroc"].tolist() == [0.8]


def test_manifest_dataset_is_deidentified_with_file_digest(mlflow_uri, make_manifest):
    df, path = make_manifest(12)
    with start_run("tracking") as run:
        sha = run.log_manifest(df, source_path=path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    result = client_for().get_run(run.run_id)
    (entry,) = result.inputs.dataset_inputs
    dataset = entry.dataset
    assert dataset.name == "training-manifest" and dataset.digest == sha[:32]
    assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == "training"
    columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    assert columns == list(DEIDENTIFIED_COLUMNS)
    assert json.loads(dataset.source) == {"uri": "manifest.csv"}
    assert json.loads(dataset.profile)["num_rows"] == 12
    tags = result.data.tags
    assert tags["manifest.sha256"] == sha and tags["manifest.n"] == "12"
    assert tags["manifest.split.train"] == str((df["split"] == "train").sum())
    assert tags["manifest.device.borealis"] == str((df["device_group"] == "borealis").sum())
    assert tags["manifest.label.1"] == "6"
    check_no_identifiers([dataset.schema, dataset.source, dataset.profile, *tags.values()],
                         [*df["patient_key"], *df["export_path"], *df["study_uid"]])


def test_manifest_needs_its_file(mlflow_uri, make_manifest, tmp_path):
    df, _ = make_manifest(4)
    with start_run("tracking") as run:
        with pytest.raises(TrackingError, match="missing.csv does not exist"):
            run.log_manifest(df, source_path=tmp_path / "missing.csv")
        with pytest.raises(TrackingError, match="lacks column"):
            run.log_manifest(df.drop(columns="split"), source_path=tmp_path / "manifest.csv")


def test_check_no_identifiers():
    check_no_identifiers(["label=1", b"split=train"], ["PAT-0001"])
    with pytest.raises(IdentifierLeakError, match=r"^Value #1 contains identifier #1 of 2;"):
        check_no_identifiers(["ok", b"..ACC-77.."], ["PAT-0001", "ACC-77"])
    with pytest.raises(IdentifierLeakError) as info:
        check_no_identifiers(["name PAT-0001"], ["PAT-0001"])
    assert "PAT-0001" not in str(info.value)
    with pytest.raises(ValueError, match="shorter than 4 characters"):
        check_no_identifiers(["x"], ["ab"])
