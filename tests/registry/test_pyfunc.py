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
        pins = [line.split("==")[0] for line in fh.read().split()]
    assert pins[:4] == ["mlflow", "torch", "monai", "numpy"] and "pydicom" in pins


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


def _stored_bundle(uri: str):
    """The logged model's ``bundle`` folder as stored in the artifact store (local here)."""
    from pathlib import Path
    from urllib.parse import urlparse

    location = client_for().get_logged_model(uri.removeprefix("models:/")).artifact_location
    root = Path(urlparse(location).path if location.startswith("file:") else location)
    return next(root.rglob("bundle.json")).parent


def test_a_bundle_edited_after_logging_is_refused(logged, volumes):
    import json

    from triage.registry.bundle import BundleDigestError

    bundle, run_id, uri = logged
    stored = _stored_bundle(uri)
    meta_path = stored / "bundle.json"
    original = meta_path.read_text(encoding="utf-8")
    meta = json.loads(original)
    meta["routing"] = {"acme": {"t_low": 1.0}}  # "every study routine"
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for source in (uri, f"runs:/{run_id}/model"):
        with pytest.raises(BundleDigestError, match=r"do not match the digest recorded when "
                                                    r"it was logged \(sha256 [0-9a-f]{12}"):
            load_bundle_from_uri(source)
    with pytest.raises(BundleDigestError):
        mlflow.pyfunc.load_model(uri)
    meta_path.write_text(original, encoding="utf-8")
    (stored / "notes.txt").write_text("an added file counts too", encoding="utf-8")
    with pytest.raises(BundleDigestError):
        load_bundle_from_uri(uri)
    (stored / "notes.txt").unlink()
    _same_bundle(load_bundle_from_uri(uri), bundle, volumes)  # restored: accepted again
    client_for().delete_logged_model_tag(uri.removeprefix("models:/"), "triage.bundle_sha256")
    with pytest.raises(BundleDigestError, match="has no recorded digest"):
        load_bundle_from_uri(uri)


def test_logged_mlmodel_has_relative_paths_and_carries_triage(logged, tmp_path, volumes):
    import json
    import os
    import subprocess
    import sys
    from importlib import metadata
    from pathlib import Path

    import yaml

    import triage

    bundle, _, uri = logged
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                     dst_path=str(tmp_path / "model")))
    text = (local / "MLmodel").read_text(encoding="utf-8")
    flavor = yaml.safe_load(text)["flavors"]["python_function"]
    assert flavor["model_code_path"] == "pyfunc_entry.py"
    assert flavor["artifacts"]["bundle"] == {"path": "artifacts/bundle",
                                             "uri": "artifacts/bundle"}
    assert flavor["code"] == "code"
    assert "triage-bundle-" not in text and str(Path(triage.__file__).parents[1]) not in text
    assert (local / "code" / "triage" / "registry" / "pyfunc.py").is_file()
    assert not list((local / "code").rglob("__pycache__"))
    pins = dict(line.split("==") for line in
                (local / "requirements.txt").read_text(encoding="utf-8").split())
    for name in ("mlflow", "torch", "monai", "numpy", "pydicom", "PyYAML", "nibabel"):
        assert pins[name] == metadata.version(name).split("+")[0], name
    # A fresh interpreter without this checkout on its path loads the model with the
    # triage code logged beside it.
    script = ("import json, sys, mlflow, numpy as np\n"
              "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
              "x = np.asarray(json.loads(sys.argv[2]), np.float32)\n"
              "print(json.dumps([sys.modules['triage'].__file__, m.predict(x).tolist()]))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script, str(local),
                           json.dumps(volumes.tolist())],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where, probs = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(local / "code")
    np.testing.assert_allclose(probs, bundle.predict_proba(volumes), rtol=1e-5)
