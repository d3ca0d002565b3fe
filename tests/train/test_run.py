"""A whole training run: manifest + ingest output → trained, calibrated bundle tracked in a
real SQLite-backed MLflow; leave-one-device-out; `triage train` / `triage evaluate`; and no
patient identifier from a real DICOM export anywhere in the MLflow store or artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pydicom
import pytest

from triage.cli import main
from triage.train.config import TrainConfig

TINY = {"model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 0.003},
        "perturb": {"p_transfer": 0.5}, "runtime": {"experiment": "test"}}


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return store


@pytest.fixture(scope="module")
def trained(tiny_training_set, tmp_path_factory):
    """One run holding out cygnus, shared by the checks below."""
    from triage.train.run import train_model

    root = tmp_path_factory.mktemp("run")
    store = root / "store"
    store.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        outcome = train_model(manifest_path=tiny_training_set.manifest_path,
                              ingest_dir=tiny_training_set.ingest_dir,
                              config=TrainConfig.from_dict(TINY), out_dir=root / "out",
                              holdout_device="cygnus", progress=False)
        run = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(outcome.run_id)
    return outcome, run, store


def test_run_evaluates_every_set_per_device_before_and_after_calibration(trained):
    outcome, _, _ = trained
    metrics = outcome.metrics
    assert set(metrics["set"]) == {"val", "calib", "test", "held-out"}
    held = metrics[metrics["set"] == "held-out"]
    assert set(held["group"]) == {"all", "cygnus"}
    assert set(metrics.loc[metrics["set"] == "test", "group"]) == {
        "all", "acme", "borealis", "ember"}
    assert held["n"].max() == 12  # every cygnus study, whatever its split
    assert 0.05 <= outcome.temperature <= 20
    assert outcome.excluded == 1  # the failed study is reported, not silently dropped
    # temperature scaling never changes the ranking
    for name in ("test", "held-out"):
        rows = metrics[(metrics["set"] == name) & (metrics["group"] == "all")]
        assert rows["auroc"].nunique() == 1


def test_bundle_reproduces_the_recorded_predictions(trained, tiny_training_set):
    from triage.data.dataset import load_array, resolve_samples
    from triage.data.manifest import read_manifest
    from triage.preprocess.cache import VolumeCache
    from triage.registry.bundle import load_bundle

    outcome, _, _ = trained
    bundle = load_bundle(outcome.bundle_dir)
    assert bundle.temperature == pytest.approx(outcome.temperature)
    assert bundle.train_devices == ["acme", "borealis", "ember"]
    assert set(bundle.appearances) == {"acme", "borealis", "ember"}
    assert set(bundle.routing["groups"]) == {"acme", "borealis", "ember"}  # calib devices
    assert bundle.rules["name"] == "default"
    predictions = pd.read_csv(outcome.out_dir / "predictions.csv")
    held = predictions[predictions["set"] == "held-out"]
    samples = {s.study_uid: s for s in resolve_samples(
        read_manifest(tiny_training_set.manifest_path), tiny_training_set.ingest_dir).samples}
    cache = VolumeCache(tiny_training_set.ingest_dir / "cache")
    arrays = np.stack([load_array(cache, samples[uid]) for uid in held["study_uid"]])
    np.testing.assert_allclose(bundle.predict_proba(arrays, device="cpu"),
                               held["p_calibrated"], atol=1e-5)


def test_mlflow_records_config_metrics_dataset_figures_and_model(trained):
    from triage.registry.pyfunc import load_bundle_from_uri

    outcome, run, store = trained
    config = TrainConfig.from_dict(TINY)
    for key, value in config.flat().items():
        assert run.data.params[key] == str(value), key
    assert run.data.params["data.n_held-out"] == "12"
    assert "perturbation.p_transfer" in run.data.params
    assert run.data.tags["triage.rules_version"].startswith("default@2+")
    metrics = run.data.metrics
    for key in ("held-out.cal.all.auroc", "test.cal.acme.ece", "calibration.temperature",
                "train.loss", "val.auroc"):
        assert key in metrics, key
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    history = client.get_metric_history(outcome.run_id, "train.loss")
    assert [m.step for m in history] == [1, 2]
    assert run.inputs.dataset_inputs[0].dataset.name == "training-manifest"
    figures = {a.path for a in client.list_artifacts(outcome.run_id, "figures")}
    assert "figures/held-out_reliability.png" in figures
    reloaded = load_bundle_from_uri(outcome.model_uri,
                                    tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    assert reloaded.temperature == pytest.approx(outcome.temperature)


def test_a_resumed_training_logs_the_epochs_of_the_run_it_resumes(trained, tiny_training_set,
                                                                  tmp_path, tracking):
    """A training killed after its last checkpoint and run again logged no curve at all
    (and one killed mid-epoch lost the epochs of the killed process's run)."""
    import shutil

    from triage.train.run import train_model

    outcome, _, _ = trained
    shutil.copytree(outcome.out_dir, tmp_path / "out")
    again = train_model(manifest_path=tiny_training_set.manifest_path,
                        ingest_dir=tiny_training_set.ingest_dir,
                        config=TrainConfig.from_dict(TINY), out_dir=tmp_path / "out",
                        holdout_device="cygnus", progress=False)
    client = mlflow.MlflowClient(f"sqlite:///{tracking / 'mlflow.db'}")
    history = client.get_metric_history(again.run_id, "train.loss")
    assert [m.step for m in history] == [1, 2]
    assert client.get_run(again.run_id).data.tags["triage.resumed_from_epoch"] == "2"


def test_lodo_table_has_one_row_per_held_out_device(tiny_training_set, tmp_path, tracking):
    from triage.train.lodo import leave_one_device_out

    config = TrainConfig.from_dict(TINY).replace(optim={"epochs": 1})
    table = leave_one_device_out(manifest_path=tiny_training_set.manifest_path,
                                 ingest_dir=tiny_training_set.ingest_dir, config=config,
                                 out_dir=tmp_path / "lodo", devices=["acme", "cygnus"],
                                 progress=False)
    assert table["held_out_device"].tolist() == ["acme", "cygnus"]
    assert table[["in_domain_auroc", "held_out_auroc", "held_out_ece"]].notna().all().all()
    assert (tmp_path / "lodo" / "lodo.csv").is_file()
    assert (tmp_path / "lodo" / "cygnus" / "bundle" / "bundle.json").is_file()


def test_unknown_holdout_device_is_a_clear_error(tiny_training_set, tmp_path, tracking):
    code = main(["train", "--manifest", str(tiny_training_set.manifest_path),
                 "--ingest", str(tiny_training_set.ingest_dir), "--out", str(tmp_path / "o"),
                 "--holdout-device-group", "cygnu"])
    assert code == 2


def test_cli_train_then_evaluate_from_a_dicom_export_leaks_no_identifier(
        make_synth_export, tmp_path, tracking, capsys):
    """The whole path from DICOM files: identifiers are in the files, never in MLflow."""
    summary = make_synth_export(studies=14, seed=4, slices=8, matrix=32,
                                devices="acme,borealis", thick_fraction=0.0)
    export, manifest = summary.out_dir, summary.manifest_path
    ingest_cfg = tmp_path / "ingest.yaml"
    ingest_cfg.write_text("selection:\n  min_slices: 4\npreprocess:\n"
                          "  target_spacing: [12, 12, 12]\n  target_shape: [16, 16, 8]\n")
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(json.dumps(TINY | {"optim": {"epochs": 1, "batch_size": 4}}))
    assert main(["ingest", str(export), "--out", str(tmp_path / "ingest"), "--config",
                 str(ingest_cfg), "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "--manifest", str(manifest), "--ingest", str(tmp_path / "ingest"),
                 "--config", str(train_cfg), "--out", str(tmp_path / "run"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--manifest", str(manifest), "--ingest", str(tmp_path / "ingest"),
                 "--model", result["model_uri"], "--split", "train", "--split", "test",
                 "--out", str(tmp_path / "eval")]) == 0
    scored = pd.read_csv(tmp_path / "eval" / "metrics.csv")
    assert "all" in set(scored["group"])

    identifiers = set(pd.read_csv(manifest, dtype=str)["patient_key"])
    for path in sorted(export.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        identifiers |= {str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber),
                        str(ds.PatientBirthDate)}
    identifiers.discard("")
    assert len(identifiers) >= 4 * 10
    from triage.registry.tracking import scan_files_for_identifiers

    assert scan_files_for_identifiers([tracking], identifiers) == []
    # the scan does find them where they belong
    assert scan_files_for_identifiers([manifest], identifiers)
