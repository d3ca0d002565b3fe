"""The model bundle as an MLflow pyfunc model, and loading a bundle back from any model URI.

`log_bundle` logs a bundle directory into the active run as a "models from code" pyfunc
(`triage/registry/pyfunc_entry.py` defines the model; no pickled Python object is stored),
with a tensor signature and pinned requirements so that MLflow never infers or resolves
requirements over the network. The `triage` package itself travels with the model as code
(MLflow's ``code_paths``: ``code/triage/``, put on ``sys.path`` when the model is loaded),
because a package of that name on PyPI is not this project; the requirements are triage's
own runtime dependencies, pinned at the installed versions. ``MLmodel`` records no local
path of the machine that logged it (the entry point and the bundle are named relative to
the model folder).

`load_bundle_from_uri` needs no pyfunc machinery: it downloads the model's artifacts and
reads the bundle directory inside them.

Whoever can edit a bundle's files controls routing (``bundle.json`` holds the thresholds and
the rules), so `log_bundle` records the `bundle_digest` of every file as a tag of the
LoggedModel (in the tracking store, not beside the files), and `load_bundle_from_uri`
refuses a model whose files no longer match it, or that has none (`BundleDigestError`).
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
import tomllib
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import triage
from triage.registry.bundle import (
    BUNDLE_JSON,
    BundleDigestError,
    BundleError,
    ModelBundle,
    bundle_digest,
    load_bundle,
)
from triage.registry.tracking import (
    TrackingError,
    _scoped_uri,
    usable_tracking_uri,
)

try:  # the base class when MLflow is installed (it is a dependency; keep imports light)
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

BUNDLE_ARTIFACT = "bundle"
ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
_PINNED = ("mlflow", "torch", "monai", "numpy")
DIGEST_TAG = "triage.bundle_sha256"
"""LoggedModel tag holding the `bundle_digest` of the logged bundle."""
DIGEST_KEY = "bundle_sha256"  # the same digest in MLmodel's model_config and metadata
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_MODEL_ID = re.compile(r"^models:/(?P<id>[^/@]+)$")


class TriageModel(PythonModel):
    """Pyfunc wrapper of a `ModelBundle`: volumes in, positive-class probabilities out.

    Input: float32 ``(N, 1, X, Y, Z)`` (the logged signature) or ``(N, X, Y, Z)`` when
    called directly, preprocessed with the bundle's ``preprocess_config``. Output: float32
    ``(N,)``, calibrated with the bundle's temperature.
    """

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None

    def load_context(self, context: Any) -> None:
        """Load the bundle from the model's ``bundle`` artifact, checked against the digest
        recorded in the model's config (when it has one)."""
        config = getattr(context, "model_config", None) or {}
        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT],
                                  expected_digest=config.get(DIGEST_KEY))

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


def _triage_dependencies() -> list[str]:
    """Names of triage's runtime dependencies (installed metadata, else pyproject.toml)."""
    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("triage") or []
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        pyproject = Path(triage.__file__).resolve().parents[1] / "pyproject.toml"
        declared = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"][
            "dependencies"] if pyproject.is_file() else []
    names = [Requirement(r).name for r in declared if "extra" not in str(
        Requirement(r).marker or "")]
    return list(dict.fromkeys([*_PINNED, *names]))


def pip_requirements() -> list[str]:
    """The pinned requirements logged with the model: triage's runtime dependencies
    (mlflow, torch, monai, numpy first) at the installed versions."""
    return [_requirement(d) for d in _triage_dependencies()]


def _stage_code(tmp: Path) -> Path:
    """A clean copy of the `triage` package (no caches) to log as the model's code."""
    target = tmp / "code" / "triage"
    shutil.copytree(Path(triage.__file__).resolve().parent, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


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
        digest = bundle_digest(staged)
        with warnings.catch_warnings():
            # MLflow nags about a missing input example; it is optional by design here.
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = _log_model(
                name, staged, signature, example,
                metadata={"triage_bundle_format": _bundle_format(staged),
                          "code_version": bundle.code_version,
                          "in_shape": list(bundle.in_shape),
                          "temperature": bundle.temperature,
                          "train_devices": list(bundle.train_devices),
                          DIGEST_KEY: digest},
                digest=digest)
    return info.model_uri


def _log_model(name: str, staged: Path, signature: Any, example: np.ndarray | None,
               metadata: dict[str, Any], digest: str) -> Any:
    import mlflow

    info = mlflow.pyfunc.log_model(
        name=name, python_model=str(ENTRY_POINT), artifacts={BUNDLE_ARTIFACT: str(staged)},
        code_paths=[str(_stage_code(staged.parent))], signature=signature,
        input_example=example, pip_requirements=pip_requirements(), metadata=metadata,
        model_config={DIGEST_KEY: digest}, tags={DIGEST_TAG: digest})
    _relative_mlmodel(info.model_id, staged.parent / "mlmodel")
    return info


def _relative_mlmodel(model_id: str, workdir: Path) -> None:
    """Rewrite the logged ``MLmodel`` without the local paths MLflow records (the entry
    point's path in this checkout, the staging folder of the bundle): both are read back
    relative to the model folder, so only their names are kept."""
    import mlflow
    import yaml

    client = mlflow.MlflowClient()
    location = client.get_logged_model(model_id).artifact_location
    workdir.mkdir()
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel",
                                                    dst_path=str(workdir)))
    conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    flavor = conf["flavors"]["python_function"]
    if flavor.get("model_code_path"):
        flavor["model_code_path"] = Path(flavor["model_code_path"]).name
    for entry in (flavor.get("artifacts") or {}).values():
        if isinstance(entry, dict) and "uri" in entry:
            entry["uri"] = entry["path"]
    path.write_text(yaml.safe_dump(conf, default_flow_style=False, sort_keys=True),
                    encoding="utf-8")
    client.log_model_artifacts(model_id, str(workdir))


def _bundle_format(directory: Path) -> int:
    import json

    return int(json.loads((directory / BUNDLE_JSON).read_text(encoding="utf-8"))["format"])


def _find_bundle(model_dir: Path, *, search: bool = True) -> Path:
    """The bundle directory inside a downloaded pyfunc model (or the directory itself).

    `search` looks for a ``bundle.json`` anywhere below `model_dir` (the layout of
    downloaded artifacts varies); a folder the user named is not searched, or
    ``--model .`` would load whichever bundle lies somewhere below the current folder.
    """
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
    if not search:
        below = sorted(str(p.parent) for p in itertools.islice(
            itertools.chain(model_dir.glob(f"*/{BUNDLE_JSON}"),
                            model_dir.glob(f"*/*/{BUNDLE_JSON}")), 3))
        hint = f"; did you mean {' or '.join(below)}?" if below else "."
        raise BundleError(model_dir, f"is not a model bundle folder (no {BUNDLE_JSON} in "
                                     f"it); give --model the bundle folder itself or a "
                                     f"model URI (models:/NAME@alias){hint}")
    found = sorted(model_dir.rglob(BUNDLE_JSON))
    if not found:
        raise BundleError(model_dir, f"holds no {BUNDLE_JSON}; the URI does not point to a "
                                     f"triage model.")
    return found[0].parent


def _mlmodel(model_dir: Path) -> dict[str, Any]:
    import yaml

    path = model_dir / "MLmodel"
    if not path.is_file():
        return {}
    conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    return conf if isinstance(conf, dict) else {}


def _recorded_digest(uri: str, model_dir: Path, tracking_uri: str) -> str | None:
    """The digest the tracking store recorded for the model `uri` names (None if none).

    The model id comes from the registry for ``models:/NAME@alias`` and ``models:/NAME/N``,
    from the URI for ``models:/<id>``, else from the downloaded ``MLmodel``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = None
        if match := _ALIAS.match(uri):
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        elif match := _VERSION.match(uri):
            version = client.get_model_version(match["name"], match["version"])
        if version is not None:
            source = _MODEL_ID.match(version.source or "")
            model_id = version.model_id or (source["id"] if source else None)
        elif match := _MODEL_ID.match(uri):
            model_id = match["id"]
        else:
            model_id = _mlmodel(model_dir).get("model_id")
        if not model_id:
            return None
        return client.get_logged_model(model_id).tags.get(DIGEST_TAG)
    except MlflowException:
        return None


def load_bundle_from_uri(uri: str, *, tracking_uri: str | None = None,
                         decode_weights: bool = True) -> ModelBundle:
    """Load the bundle of a logged or registered model, or a local bundle directory.

    A logged model's files must match the digest recorded in the tracking store when it
    was logged; a downloaded pyfunc folder is checked against the digest in its
    ``MLmodel``; a bare bundle folder is read as it is.

    Args:
        uri: ``models:/NAME@alias``, ``models:/NAME/3``, ``models:/<model_id>``,
            ``runs:/<run_id>/model``, any artifact URI, or a local directory (a bundle or
            a downloaded pyfunc model).
        tracking_uri: tracking (and registry) URI; see `resolve_tracking_uri`.
        decode_weights: False leaves the weights encoded (see `load_bundle`).

    Raises:
        BundleDigestError: the files do not match the recorded digest, or a logged model
            has no recorded digest.
        BundleError: the artifacts hold no valid bundle.
        TrackingError: the URI cannot be resolved or downloaded (the MLflow error is
            chained).
    """
    if not uri.strip():
        raise BundleError(None, "the model URI is empty; give --model a model URI "
                                "(models:/NAME@alias, runs:/<run id>/model) or a bundle "
                                "folder.")
    local = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
    if "://" not in uri and ":/" not in uri:  # a path on this machine
        if not local.is_dir():
            what = "is a file, not a folder" if local.exists() else "does not exist"
            raise BundleError(local, f"{what}; give --model a bundle folder or a model URI "
                                     f"(models:/NAME@alias).")
        config = _mlmodel(local).get("model_config") or {}
        return load_bundle(_find_bundle(local, search=False),
                           expected_digest=config.get(DIGEST_KEY),
                           decode_weights=decode_weights)
    import mlflow
    from mlflow.exceptions import MlflowException

    resolved = usable_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="triage-model-") as tmp:
        try:
            with _scoped_uri(resolved):
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=resolved,
                    registry_uri=resolved)
        except MlflowException as err:
            raise TrackingError(f"Cannot download model '{uri}' from {resolved}: "
                                f"{err.message}") from err
        directory = _find_bundle(Path(path))
        expected = _recorded_digest(uri, Path(path), resolved)
        if expected is None:
            raise BundleDigestError(uri, None, bundle_digest(directory))
        try:
            return load_bundle(directory, expected_digest=expected,
                               decode_weights=decode_weights)
        except BundleDigestError as err:
            raise BundleDigestError(uri, err.expected, err.actual) from None
