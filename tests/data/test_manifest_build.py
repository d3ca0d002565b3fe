"""`triage manifest build` on a synthetic export with labels keyed by accession number (from
the generator's ground truth): build -> validate -> ingest (-> a short training, slow), the
findings, the secret, extension, and no identifier anywhere in what it writes or says."""

from __future__ import annotations

import csv
import json
import logging
import os
import stat

import pandas as pd
import pytest

from triage.cli import main
from triage.data.labels import LabelSpec
from triage.data.manifest import read_manifest
from triage.data.manifest_build import Finding, build_manifest
from triage.data.synth import SynthConfig, generate_export
from triage.ingest.config import IngestConfig

# Small and thin: 8 slices pass selection only with min_slices 4 (as in tests/train).
EXPORT = {"studies": 16, "seed": 4, "slices": 8, "matrix": 32, "devices": "acme,borealis",
          "thick_fraction": 0.0, "extras": False, "repeat_patient_fraction": 0.4}
INGEST_YAML = ("selection:\n  min_slices: 4\npreprocess:\n  target_spacing: [12, 12, 12]\n"
               "  target_shape: [16, 16, 8]\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A synthetic export, its ingest config, and the ground truth; read-only."""
    root = tmp_path_factory.mktemp("site")
    summary = generate_export(root / "export", SynthConfig(**EXPORT))
    config = root / "ingest.yaml"
    config.write_text(INGEST_YAML)
    return summary, config


def _identifiers(summary) -> set[str]:
    ids = set()
    for study in summary.studies:
        h = study.header
        ids |= {h.patient_name, h.patient_id, h.accession_number, h.patient_birth_date}
    return ids


def _write_labels(path, studies, *, extra_rows=(), header=("accession_number", "label")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for study in studies:
            writer.writerow([study.header.accession_number, "yes" if study.label else "no"])
        writer.writerows(extra_rows)
    return path


def _build_args(site, labels, out, secret, *more):
    summary, config = site
    return ["manifest", "build", str(summary.out_dir), "--labels", str(labels), "--out",
            str(out), "--secret-file", str(secret), "--config", str(config), *more]


def test_build_then_validate_then_ingest(site, tmp_path, capsys, caplog):
    summary, config = site
    labels = _write_labels(tmp_path / "labels.csv", summary.studies)
    out, secret = tmp_path / "manifest.csv", tmp_path / "keys" / "secret"
    with caplog.at_level(logging.INFO):
        assert main(_build_args(site, labels, out, secret, "--seed", "3", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["studies"] == report["studies_new"] == len(summary.studies)
    assert report["findings"] == {} and report["secret_created"] is True
    assert main(["manifest", "validate", str(out)]) == 0

    df = read_manifest(out)
    truth = {s.study_uid: s for s in summary.studies}
    assert set(df["study_uid"]) == set(truth)
    for row in df.itertuples():
        assert row.label == truth[row.study_uid].label
        assert row.device_group == truth[row.study_uid].device.device_group
    # one key per patient, other than the generator's (another secret)
    by_patient = df.groupby(df["study_uid"].map(lambda u: truth[u].slot.patient))
    assert (by_patient["patient_key"].nunique() == 1).all()
    assert df["patient_key"].nunique() == summary.n_patients
    assert not set(df["patient_key"]) & {s.slot.patient_key for s in summary.studies}
    assert (df.groupby("patient_key")["split"].nunique() == 1).all()
    # the secret: 0600, a warning to keep it apart
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert "out of the export" in caplog.text and str(secret) in caplog.text

    assert main(["ingest", str(summary.out_dir), "--out", str(tmp_path / "ingest"), "--config",
                 str(config), "--json"]) == 0
    from triage.data.dataset import resolve_samples

    resolved = resolve_samples(df, tmp_path / "ingest")
    assert len(resolved.samples) == len(df) and not resolved.excluded


def test_no_identifier_in_the_manifest_the_output_or_the_logs(site, tmp_path, capsys, caplog):
    summary, _ = site
    studies = list(summary.studies)
    # every kind of finding, each of which could be tempted to quote an accession
    labels = _write_labels(tmp_path / "labels.csv", studies[1:], extra_rows=[
        ["ZQNOSUCHACC1", "1"], [studies[2].header.accession_number, "maybe"],
        [studies[3].header.accession_number, "no" if studies[3].label else "yes"],
        [studies[4].header.accession_number, "yes" if studies[4].label else "no"]])
    out = tmp_path / "manifest.csv"
    with caplog.at_level(logging.DEBUG):
        assert main(_build_args(site, labels, out, tmp_path / "secret")) == 0
        assert main(_build_args(site, labels, out, tmp_path / "secret", "--json")) == 0
        assert main(["manifest", "summary", str(out)]) == 0
    said = capsys.readouterr()
    identifiers = _identifiers(summary) | {"ZQNOSUCHACC1"}
    from triage.registry.tracking import check_no_identifiers

    check_no_identifiers([out.read_bytes(), said.out, said.err, caplog.text], identifiers)
    assert "study-without-label: 1" in said.err and "label-without-study: 1" in said.err
    assert f"{labels} line {len(studies) + 1}: no study of the export" in said.err


def test_findings_are_counted_with_first_examples_by_line_and_study(site, tmp_path):
    summary, config = site
    studies = list(summary.studies)
    n = len(studies)
    labels = _write_labels(tmp_path / "labels.csv", studies[1:], extra_rows=[
        ["ZQNOSUCHACC1", "1"], ["ZQNOSUCHACC2", "0"],
        [studies[2].header.accession_number, "maybe"],
        [studies[3].header.accession_number, "no" if studies[3].label else "yes"],
        [studies[4].header.accession_number, "yes" if studies[4].label else "no"]])
    df, report = build_manifest(summary.out_dir, labels, secret_file=tmp_path / "s",
                                selection=IngestConfig.from_yaml(config).selection)
    counts = {kind: len(m) for kind, m in report.findings.items()}
    assert counts == {Finding.STUDY_WITHOUT_LABEL: 1, Finding.LABEL_WITHOUT_STUDY: 2,
                      "unknown-label-value": 1, "conflicting-labels": 1, "duplicate-key": 1}
    assert report.findings[Finding.STUDY_WITHOUT_LABEL] == [
        f"study {studies[0].study_uid}: no row of {labels} has its accession."]
    assert report.findings["conflicting-labels"] == [
        f"{labels} line {n + 4}, column 'accession_number': same accession_number as line 4 "
        f"but label {1 - studies[3].label}, not {studies[3].label}; the study is left out "
        "until one of the rows is fixed."]
    # the unknown value's row is left out but line 3 still labels study 2; conflicts leave
    # study 3 out; the unlabelled study 0 is out
    assert set(df["study_uid"]) == {s.study_uid for s in studies} - {studies[0].study_uid,
                                                                     studies[3].study_uid}
    text = report.lines(examples=1)
    assert f"{Finding.LABEL_WITHOUT_STUDY}: 2" in text and "  ... and 1 more" in text
    assert report.to_dict(examples=1)["findings"]["label-without-study"]["count"] == 2


def test_same_inputs_same_bytes_and_the_secret_decides_the_keys(site, tmp_path):
    summary, config = site
    labels = _write_labels(tmp_path / "labels.csv", summary.studies)
    args = {"selection": IngestConfig.from_yaml(config).selection, "seed": 1}
    build_manifest(summary.out_dir, labels, out=tmp_path / "a.csv",
                   secret_file=tmp_path / "s1", **args)
    build_manifest(summary.out_dir, labels, out=tmp_path / "b.csv",
                   secret_file=tmp_path / "s1", **args)
    other, _ = build_manifest(summary.out_dir, labels, secret_file=tmp_path / "s2", **args)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    first = pd.read_csv(tmp_path / "a.csv", dtype=str)
    assert not set(first["patient_key"]) & set(other["patient_key"])


def test_extending_never_moves_a_study_and_keeps_patients_together(site, tmp_path):
    summary, config = site
    studies = list(summary.studies)
    selection = IngestConfig.from_yaml(config).selection
    out, secret = tmp_path / "manifest.csv", tmp_path / "secret"
    # first visits first: the second visit of a repeat patient comes in the second build
    first = [s for s in studies if s.slot.visit == 0]
    build_manifest(summary.out_dir, _write_labels(tmp_path / "l1.csv", first),
                   out=out, secret_file=secret, selection=selection, seed=2)
    before = pd.read_csv(out, dtype=str, keep_default_na=False)
    # hand-edit: move every first-build study to test; the extension must keep that
    before["split"] = "test"
    before.to_csv(out, index=False)
    df, report = build_manifest(summary.out_dir, _write_labels(tmp_path / "l2.csv", studies),
                                out=out, secret_file=secret, selection=selection, seed=9)
    assert report.studies_kept == len(before) and report.studies_new == len(studies) - len(
        before)
    pd.testing.assert_frame_equal(df.iloc[:len(before)], before)
    assert (df.groupby("patient_key")["split"].nunique() == 1).all()
    repeat = [s for s in studies if s.slot.visit == 1]
    assert repeat, "the export should have a repeat patient split across the two builds"
    split = df.set_index("study_uid")["split"]
    assert all(split[s.study_uid] == "test" for s in repeat)
    assert main(["manifest", "validate", str(out)]) == 0


def test_a_labels_device_group_overrides_dicom(site, tmp_path):
    summary, config = site
    studies = list(summary.studies)
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["accession_number", "label", "device_group"])
        writer.writerow([studies[0].header.accession_number, studies[0].label, "site-a-ct"])
        for s in studies[1:]:
            writer.writerow([s.header.accession_number, s.label, ""])
    df, _ = build_manifest(summary.out_dir, path, secret_file=tmp_path / "s",
                           selection=IngestConfig.from_yaml(config).selection)
    groups = df.set_index("study_uid")["device_group"]
    assert groups[studies[0].study_uid] == "site-a-ct"
    assert groups[studies[1].study_uid] == studies[1].device.device_group


def test_study_uid_keys_join_too(site, tmp_path):
    summary, config = site
    path = tmp_path / "labels.csv"
    pd.DataFrame({"StudyInstanceUID": [s.study_uid for s in summary.studies],
                  "label": [s.label for s in summary.studies]}).to_csv(path, index=False)
    df, report = build_manifest(summary.out_dir, path, secret_file=tmp_path / "s",
                                spec=LabelSpec(key="study_uid"))
    assert len(df) == len(summary.studies) and not report.findings.get("study-without-label")


@pytest.mark.parametrize(("content", "message"), [
    ("accession_number,finding\nX1,1\n", "line 1, column 'label': column 'label' is missing"),
    (b"accession_number,label\nX1,1\nX2,\xe9\n", "line 3, column 'label': not UTF-8"),
    ("study_uid,label\n1.2.3,1\n", "no key column for --key accession"),
    ("accession_number,label\nZQNOSUCHACC1,1\n", "no study of the export"),
])
def test_hard_errors_exit_two_with_one_line(site, tmp_path, capsys, content, message):
    labels = tmp_path / "labels.csv"
    (labels.write_bytes if isinstance(content, bytes) else labels.write_text)(content)
    assert main(_build_args(site, labels, tmp_path / "m.csv", tmp_path / "s")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {labels}") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "m.csv").exists()


def test_bad_options_exit_two(site, tmp_path, capsys):
    labels = _write_labels(tmp_path / "labels.csv", site[0].studies)
    for more, message in ((["--splits", "train=0.9"], "sum to 0.9"),
                          (["--key", "mrn"], "'mrn' is not one of accession, study_uid")):
        assert main(_build_args(site, labels, tmp_path / "m.csv", tmp_path / "s", *more)) == 2
        assert message in capsys.readouterr().err


TINY_TRAIN = {"model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
              "optim": {"epochs": 1, "batch_size": 4, "lr": 0.003},
              "runtime": {"experiment": "test"}}


@pytest.mark.slow
def test_a_short_training_runs_on_the_built_manifest(site, tmp_path, monkeypatch, capsys):
    summary, config = site
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    labels = _write_labels(tmp_path / "labels.csv", summary.studies)
    out = tmp_path / "manifest.csv"
    assert main(_build_args(site, labels, out, tmp_path / "secret")) == 0
    assert main(["ingest", str(summary.out_dir), "--out", str(tmp_path / "ingest"), "--config",
                 str(config)]) == 0
    train_cfg = tmp_path / "train.yaml"
    train_cfg.write_text(json.dumps(TINY_TRAIN))
    capsys.readouterr()
    assert main(["train", "--manifest", str(out), "--ingest", str(tmp_path / "ingest"),
                 "--config", str(train_cfg), "--out", str(tmp_path / "run"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_id"]
