"""No patient identifiers in MLflow: log a full run from a manifest full of distinctive fake
identifiers, then scan the SQLite file's bytes and every artifact file for each of them."""

from __future__ import annotations

import hashlib

from triage.registry.bundle import save_bundle
from triage.registry.pyfunc import log_bundle
from triage.registry.tracking import (
    check_no_identifiers,
    client_for,
    scan_files_for_identifiers,
    start_run,
)


def test_no_identifier_reaches_the_store_or_the_artifacts(tmp_path, monkeypatch, make_bundle,
                                                          make_manifest):
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    df, manifest_path = make_manifest(16, extras=True, key_prefix="ZQPHIKEY")
    identifiers = sorted({*df["patient_key"], *df["meta_patient_name"],
                          *df["meta_accession"], *df["export_path"]})
    uids = sorted({*df["study_uid"], *df["series_uid"]})
    assert len(identifiers) == 64

    bundle = make_bundle(train_devices=sorted(df["device_group"].unique()))
    directory = save_bundle(bundle, tmp_path / "bundle")
    per_device = (df.groupby("device_group")["label"].mean().rename("prevalence")
                  .reset_index())
    with start_run("phi", run_name="phi-scan", tags={"kind": "test"}) as run:
        run.log_params({"train.model": "cnn-small", "data.n": len(df)})
        run.log_manifest(df, source_path=manifest_path)
        run.log_metrics({"auroc": 0.7, "auroc.acme": 0.6}, step=0)
        run.log_table(per_device, "tables/per_device.csv")
        run.log_json({"devices": sorted(df["device_group"].unique())}, "summary.json")
        model_uri = log_bundle(directory)

    client = client_for()
    mlflow_run = client.get_run(run.run_id)
    params_and_tags = [*mlflow_run.data.params.items(), *mlflow_run.data.tags.items()]
    # UIDs are not patient identifiers, but stay out of params and tags too.
    check_no_identifiers([f"{k}={v}" for k, v in params_and_tags], identifiers + uids)

    # The whole store folder: mlflow.db (and any journal) and mlartifacts/ with the model.
    assert (store / "mlflow.db").is_file() and model_uri.startswith("models:/")
    assert sum(1 for p in (store / "mlartifacts").rglob("*") if p.is_file()) >= 8
    assert scan_files_for_identifiers([store], identifiers) == []
    assert scan_files_for_identifiers([store], uids) == []
    # The scan does find what is there: the manifest itself holds every identifier.
    hits = scan_files_for_identifiers([manifest_path], identifiers)
    assert len(hits) == len(identifiers)
    assert mlflow_run.data.tags["manifest.sha256"] == hashlib.sha256(
        manifest_path.read_bytes()).hexdigest()


def test_a_manifest_built_from_an_export_holds_no_identifier(make_synth_export, tmp_path):
    """`triage manifest build` joins by accession number; neither it nor any other header
    identifier (name, ID, birth date) may reach the manifest, which goes to MLflow."""
    import csv

    import pydicom

    from triage.cli import main

    summary = make_synth_export(studies=6, seed=2)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["accession_number", "label"])
        writer.writerows([s.header.accession_number, s.label] for s in summary.studies)
    manifest = tmp_path / "manifest.csv"
    assert main(["manifest", "build", str(summary.out_dir), "--labels", str(labels), "--out",
                 str(manifest), "--secret-file", str(tmp_path / "secret")]) == 0

    identifiers = set()
    for path in sorted(p for p in summary.out_dir.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        identifiers |= {str(ds.get(k, "")) for k in ("PatientName", "PatientID",
                                                    "AccessionNumber", "PatientBirthDate")}
    identifiers.discard("")
    patients = len({s.slot.patient for s in summary.studies})
    assert len(identifiers) == 3 * patients + len(summary.studies)
    assert scan_files_for_identifiers([manifest], identifiers) == []
    # the scan does find them where they are: the labels file holds every accession
    assert len(scan_files_for_identifiers([labels], identifiers)) == len(summary.studies)
