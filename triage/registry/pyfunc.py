"""The model bundle as an MLflow pyfunc model, and loading a bundle back from any model URI.

`log_bundle` logs a bundle directory into the active run as a "models from code" pyfunc
(`triage/registry/pyfunc_entry.py` defines the model; no pickled Python object is stored),
with a tensor signature and a short, pinned requirements list so that MLflow never infers
or resolves requirements over the network. The pyfunc needs `triage` importable where it is
loaded; it is not listed in the requirements (it is not on PyPI under that name).

`load_bundle_from_uri` needs no pyfunc machinery: it downloads the model's artifacts and
reads the bundle directory inside them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from triage.registry.bundle import BUNDLE_JSON, BundleError, ModelBundle, load_bundle
from triage.registry.tracking import (
    TrackingError,
    _scoped_uri,
    ensure_reachable,
    resolve_tracking_uri,
)

try:  # the base class when MLflow is installed (it is a dependency; keep imports light)
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

BUNDLE_ARTIFACT = "bundle"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
_PINNED = ("mlflow", "torch", "monai", "numpy")


class TriageModel(PythonModel):
    """Pyfunc wrapper of a `ModelBundle`: volumes in, positive-class probabilities out.

    Input: float32 ``(N, 1, X, Y, Z)`` (the logged signature) or ``(N, X, Y, Z)`` when
    called directly, preprocessed with the bundle's ``preprocess_config``. Output: float32
    ``(N,)``, calibrated with the bundle's temperature.
    """

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None

    def load_context(self, context: Any) -> None:
        """Load the bundle from the model's ``bundle`` artifact."""
        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> np.ndarray:
        """Positive-class probabilities (N,) as float32."""
        if self.bundle is None:
            raise BundleError(None, "the pyfunc model was used before load_context.")
        array = np.asarray(model_input, dtype=np.float32)
        return self.bundle.predict_proba(array).astype(np.float32)


def _requirement(dist: str) -> str:
    version = metadata.version(dist).split("+", 1)[0]  # drop local tags such as +cpu
    return f"{dist}=={version}"


def pip_requirements() -> list[str]:
    """The pinned requirements logged with the model: mlflow, torch, monai, numpy."""
    return [_requirement(d) for d in _PINNED]


def log_bundle(bundle_dir: Path | str, *, name: str = "model",
               input_example: bool = False) -> str:
    """Log a bundle directory as a pyfunc model in the active MLflow run.

    Args:
        bundle_dir: a directory written by `save_bundle` (validated by loading it).
        name: the logged model's name (``runs:/<run_id>/<name>`` resolves to it).
        input_example: also store a zero volume as input example (MLflow then runs the
            model on it while logging; the example is stored as JSON, so keep it off
            for full-size grids).

    Returns:
        The MLflow 3 model URI ``models:/<model_id>`` (a LoggedModel); pass it to
        ``mlflow.register_model`` or `load_bundle_from_uri`.

    Raises:
        TrackingError: there is no active run (use `triage.registry.tracking.start_run`).
        BundleError: `bundle_dir` is not a valid bundle.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    if mlflow.active_run() is None:
        raise TrackingError("log_bundle needs an active MLflow run; call it inside "
                            "triage.registry.tracking.start_run(...).")
    bundle = load_bundle(bundle_dir)
    shape = (-1, 1, *bundle.in_shape)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), shape)]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]))
    example = np.zeros((1, 1, *bundle.in_shape), np.float32) if input_example else None
    with tempfile.TemporaryDirectory(prefix="triage-bundle-") as tmp:
        # Stage under a fixed name: MLflow records the artifact's local path in MLmodel,
        # and the caller's path may name a site, a study or an export.
        staged = Path(tmp) / BUNDLE_ARTIFACT
        shutil.copytree(bundle_dir, staged)
        with warnings.catch_warnings():
            # MLflow nags about a missing input example; it is optional by design here.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = _log_model(
                name, staged, signature, example,
                metadata={"triage_bundle_format": _bundle_format(staged),
                          "code_version": bundle.code_version,
                          "in_shape": list(bundle.in_shape),
                          "temperature": bundle.temperature,
                          "train_devices": list(bundle.train_devices)})
    return info.model_uri


def _log_model(name: str, staged: Path, signature: Any, example: np.ndarray | None,
               metadata: dict[str, Any]) -> Any:
    import mlflow

    return mlflow.pyfunc.log_model(
        name=name, python_model=str(ENTRY_POINT), artifacts={BUNDLE_ARTIFACT: str(staged)},
        signature=signature, input_example=example, pip_requirements=pip_requirements(),
        metadata=metadata)


def _bundle_format(directory: Path) -> int:
    import json

    return int(json.loads((directory / BUNDLE_JSON).read_text(encoding="utf-8"))["format"])


def _find_bundle(model_dir: Path) -> Path:
    """The bundle directory inside a downloaded pyfunc model (or the directory itself)."""
    import yaml

    if (model_dir / BUNDLE_JSON).is_file():
        return model_dir
    mlmodel = model_dir / "MLmodel"
    if mlmodel.is_file():
        conf = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
        artifacts = conf.get("flavors", {}).get("python_function", {}).get("artifacts") or {}
        entry = artifacts.get(BUNDLE_ARTIFACT)
        if entry and (model_dir / entry["path"] / BUNDLE_JSON).is_file():
            return model_dir / entry["path"]
    found = sorted(model_dir.rglob(BUNDLE_JSON))
    if not found:
        raise BundleError(model_dir, f"holds no {BUNDLE_JSON}; the URI does not point to a "
                                     f"triage model.")
    return found[0].parent


def load_bundle_from_uri(uri: str, *, tracking_uri: str | None = None) -> ModelBundle:
    """Load the bundle of a logged or registered model, or a local bundle directory.

    Args:
        uri: ``models:/NAME@alias``, ``models:/NAME/3``, ``models:/<model_id>``,
            ``runs:/<run_id>/model``, any artifact URI, or a local directory (a bundle or
            a downloaded pyfunc model).
        tracking_uri: tracking (and registry) URI; see `resolve_tracking_uri`.

    Raises:
        BundleError: the artifacts hold no valid bundle.
        TrackingError: the URI cannot be resolved or downloaded (the MLflow error is
            chained).
    """
    local = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if "://" not in uri and ":/" not in uri and local.is_dir():
        return load_bundle(_find_bundle(local))
    import mlflow
    from mlflow.exceptions import MlflowException

    resolved = resolve_tracking_uri(tracking_uri)
    ensure_reachable(resolved)
    with tempfile.TemporaryDirectory(prefix="triage-model-") as tmp:
        try:
            with _scoped_uri(resolved):
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=resolved,
                    registry_uri=resolved)
        except MlflowException as err:
            raise TrackingError(f"Cannot download model '{uri}' from {resolved}: "
                                f"{err.message}") from err
        return load_bundle(_find_bundle(Path(path)))
