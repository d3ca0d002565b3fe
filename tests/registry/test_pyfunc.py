"""The bundle through MLflow: log_bundle -> load_bundle_from_uri / pyfunc / registry alias."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from triage.registry.bundle import save_bundle
from triage.registry.pyfunc import TriageModel, load_bundle_from_uri, log_bundle
from triage.registry.tracking import TrackingError, client_for, start_run


@pytest.fixture
def logged(mlflow_uri, make_bundle, tmp_path):
    """A bundle (temperature 1.3) logged in a finished run: (bundle, run_id, model URI)."""
    bundle = make_bundle(temperature=1.3)
    directory = save_bundle(bundle, tmp_path / "bundle")
    with start_run("pyfunc") as run:
        uri = log_bundle(directory)
    return bundle, run.run_id, uri


def _same_bundle(a, b, volumes):
    assert all(torch.equal(a.state_dict[k], v) for k, v in b.state_dict.items())
    assert a.metadata() == b.metadata()
    np.testing.assert_array_equal(a.predict_proba(volumes), b.predict_proba(volumes))


def test_log_bundle_returns_a_logged_model_uri(logged, volumes):
    bundle, run_id, uri = logged
    assert uri.startswith("models:/m-")
    model = client_for().get_logged_model(uri.removeprefix("models:/"))
    assert model.source_run_id == run_id and model.name == "model"
    _same_bundle(load_bundle_from_uri(uri), bundle, volumes)
    _same_bundle(load_bundle_from_uri(f"runs:/{run_id}/model"), bundle, volumes)


def test_pyfunc_predicts_calibrated_probabilities(logged, volumes):
    bundle, _, uri = logged
    model = mlflow.pyfunc.load_model(uri)
    inputs = model.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, 1, 16, 16, 8) and inputs.type == np.dtype(np.float32)
    out = model.predict(volumes)
    assert out.shape == (3,) and out.dtype == np.float32
    np.testing.assert_allclose(out, bundle.predict_proba(volumes), rtol=1e-6)
    requirements = mlflow.pyfunc.get_model_dependencies(uri, format="pip")
    with open(requirements) as fh:
        pins = sorted(line.split("==")[0] for line in fh.read().split())
    assert pins == ["mlflow", "monai", "numpy", "torch"]


def test_registered_alias_loads_the_bundle(logged, volumes, mlflow_uri):
    bundle, run_id, uri = logged
    client = client_for()
    version = mlflow.register_model(uri, "triage-preview")
    client.set_registered_model_alias("triage-preview", "champion", version.version)
    assert client.get_model_version_by_alias("triage-preview", "champion").version == \
        version.version
    _same_bundle(load_bundle_from_uri("models:/triage-preview@champion"), bundle, volumes)
    _same_bundle(load_bundle_from_uri(f"models:/triage-preview/{version.version}"), bundle,
                 volumes)
    np.testing.assert_allclose(
        mlflow.pyfunc.load_model("models:/triage-preview@champion").predict(volumes),
        bundle.predict_proba(volumes), rtol=1e-6)


def test_local_directories_and_errors(logged, make_bundle, tmp_path, volumes):
    bundle = make_bundle()
    directory = save_bundle(bundle, tmp_path / "local")
    _same_bundle(load_bundle_from_uri(str(directory)), bundle, volumes)
    downloaded = mlflow.artifacts.download_artifacts(artifact_uri=logged[2],
                                                     dst_path=str(tmp_path / "dl"))
    _same_bundle(load_bundle_from_uri(downloaded), logged[0], volumes)
    with pytest.raises(TrackingError, match="Cannot download model 'models:/nope@champion'"):
        load_bundle_from_uri("models:/nope@champion")
    with pytest.raises(TrackingError, match="needs an active MLflow run"):
        log_bundle(directory)


def test_triage_model_direct_use(make_bundle, tmp_path, volumes):
    bundle = make_bundle()
    directory = save_bundle(bundle, tmp_path / "b")

    class Context:
        artifacts = {"bundle": str(directory)}

    model = TriageModel()
    model.load_context(Context())
    np.testing.assert_array_equal(model.predict(None, volumes[:, 0]),
                                  bundle.predict_proba(volumes))
