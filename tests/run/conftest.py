"""Fixtures for `triage run`: a tiny trained model (built once) and small exports to triage.

The model is real but minimal: a 14-study, two-device synthetic export, ingested on a
16x16x8 grid and trained for one epoch of cnn-small (about 15 s, once per session).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from triage.configs import config_path
from triage.train.tiny import DEVICES, train_tiny


@pytest.fixture(scope="session")
def run_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the MLflow runs `triage run` records in these tests."""
    return f"sqlite:///{tmp_path_factory.mktemp('run-tracking') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _run_tracking(run_tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`triage run` records every run in MLflow: never into the working directory."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run_tracking_uri)


@dataclass(frozen=True)
class TinyModel:
    """The trained bundle and where it lives."""

    bundle_dir: Path
    tracking_uri: str
    model_uri: str


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A trained, calibrated bundle whose ingest config matches `make_run_export`."""
    root = tmp_path_factory.mktemp("tiny-model")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    outcome, _ = train_tiny(root, experiment="test-run", tracking_uri=tracking)
    return TinyModel(outcome.bundle_dir, tracking, outcome.model_uri)


@dataclass(frozen=True)
class RunCase:
    """An export to triage and what the test knows about it.

    Attributes:
        export_dir: 6 studies of acme, borealis and cygnus (unseen in training), one of
            them cut to 3 slices (rejected by selection), plus a corrupt file (its own
            pseudo-study) and a text file (ignored).
        rejected_uid: the study whose only series has too few slices.
        identifiers: study UID -> (patient ID, accession number, study date) in the files.
        names: every patient name, ID, accession number and birth date in the files.
    """

    export_dir: Path
    rejected_uid: str
    identifiers: dict[str, tuple[str, str, str]]
    names: frozenset[str]


@pytest.fixture(scope="session")
def run_case(tmp_path_factory: pytest.TempPathFactory) -> RunCase:
    import pydicom

    from triage.data.synth import SynthConfig, generate_export

    root = tmp_path_factory.mktemp("run-case")
    summary = generate_export(root / "export", SynthConfig(
        studies=6, seed=9, slices=8, matrix=32, devices=DEVICES + ",cygnus",
        thick_fraction=0.0, extras=False))
    export = summary.out_dir
    files: dict[str, list[Path]] = {}
    identifiers, names = {}, set()
    for path in sorted(p for p in export.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue  # manifest, ground truth
        files.setdefault(ds.StudyInstanceUID, []).append(path)
        identifiers[ds.StudyInstanceUID] = (str(ds.PatientID), str(ds.AccessionNumber),
                                            str(ds.StudyDate))
        names |= {str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber),
                  str(ds.PatientBirthDate)}
    rejected = sorted(files)[1]
    for path in files[rejected][3:]:
        path.unlink()
    (export / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 8)
    (export / "README.txt").write_text("not DICOM", encoding="utf-8")
    names.discard("")
    return RunCase(export, rejected, identifiers, frozenset(names))


@pytest.fixture(scope="session")
def rules_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default rules with the slice QC bound of the tiny export (4 instead of 16)."""
    import yaml

    from triage.route.router import Router  # noqa: F401 - the rule layer must be there

    default = config_path("rules")
    rules = yaml.safe_load(default.read_text(encoding="utf-8"))
    for rule in rules["rules"]:
        if rule["kind"] == "min-slices":
            rule["min_slices"] = 4
    rules["name"] = "test-run"
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def routing_for(rules_path: Path) -> dict:
    """Fitted-threshold records for the two training devices (as `bundle.routing` holds).

    Hand-set thresholds (the calibration split of the tiny export is far too small to
    certify anything) that split the tiny model's scores into all three score routes.
    """
    from triage.route import FittedThresholds, GroupThresholds, load_rules

    config = load_rules(rules_path).thresholds
    groups = {g: GroupThresholds(g, 300, 300, t_low=0.3, t_high=0.55)
              for g in ("acme-tomography-voxa-64", "borealis-imaging-aurora-128")}
    return FittedThresholds(config, groups).to_dict()


@pytest.fixture(scope="session")
def router(rules_path, tiny_model):
    from triage.registry.bundle import load_bundle
    from triage.route import Router

    bundle = load_bundle(tiny_model.bundle_dir)
    return Router.from_yaml(rules_path, routing_for(rules_path), bundle.train_devices)
