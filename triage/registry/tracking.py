"""MLflow tracking: where runs go, and a `RunLogger` that records them without patient data.

The tracking URI resolves as: an explicit argument, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<absolute cwd>/mlflow.db`` (MLflow's own default since 3.7, made absolute so a
later ``chdir`` does not move it). The model registry always uses the same URI.

Everything written through `RunLogger` goes through `MlflowClient` bound to that URI; the
global (fluent) MLflow state is set only inside `start_run`, because `mlflow.pyfunc.log_model`
needs an active run, and is restored afterwards (including the environment variables that
`mlflow.set_tracking_uri` writes).

No patient identifiers reach MLflow: manifests are logged as a de-identified view
(`DEIDENTIFIED_COLUMNS`) with the file's hash, and `check_no_identifiers` is the guard the
tests use on the backend store and the artifacts (docs/mlflow.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from triage.errors import ConfigError, EnvironmentalError, TriageError, describe_environmental

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"
DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"

# Manifest columns that identify a patient, a study or a file of an export; never logged.
IDENTIFIER_COLUMNS = ("study_uid", "patient_key", "series_uid", "export_path")
# The only manifest columns that reach MLflow (the dataset view and its counts).
DEIDENTIFIED_COLUMNS = ("label", "device_group", "split")

# MLflow's limits (mlflow.utils.validation); truncating here keeps MLflow from truncating
# (and logging the first 100 characters of the value) or rejecting a long value.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
TRUNCATION_MARKER = "...[truncated]"


class TrackingError(TriageError):
    """An MLflow run cannot be recorded as asked (bad value, missing file, no run)."""


class IdentifierLeakError(TriageError):
    """A value bound for MLflow contains a patient identifier.

    The message names the position of the value and of the identifier, never the
    identifier itself.
    """


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: `uri`, else ``MLFLOW_TRACKING_URI``, else a SQLite file.

    Args:
        uri: an explicit tracking URI (``sqlite:///...``, ``http://host:5000``, ...).

    Returns:
        The URI; the default is ``sqlite:///<absolute cwd>/mlflow.db``.

    Example:
        >>> resolve_tracking_uri("sqlite:////tmp/x.db")
        'sqlite:////tmp/x.db'
    """
    if uri:
        return str(uri)
    env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if env:
        return env
    return f"sqlite:///{(Path.cwd() / DEFAULT_DB_NAME).resolve()}"


# A server that does not answer fails in seconds, not after MLflow's default of 7 retries
# of 120 s each; values the user set in the environment are kept.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
CONNECT_SECONDS = 10.0


def ensure_reachable(uri: str, *, timeout: float = CONNECT_SECONDS) -> None:
    """Check that the tracking server of an ``http(s)://`` `uri` accepts connections, and
    bound MLflow's HTTP timeouts and retries (`HTTP_LIMITS`) for what follows.

    Other URIs (a SQLite file, a local folder) are not checked.

    Raises:
        EnvironmentalError: no connection within `timeout` seconds.
    """
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    where = f"{parsed.scheme}://{parsed.hostname}:{port}"  # without any credentials
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise EnvironmentalError(
            f"The MLflow tracking server {where} cannot be reached "
            f"({describe_environmental(err)}); start it, or point MLFLOW_TRACKING_URI at "
            f"one that runs.") from err


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path in ("/", "/:memory:"):
        return None
    # sqlite:///rel.db -> path "/rel.db" is relative; sqlite:////abs.db -> "//abs.db".
    path = unquote(parsed.path[1:])
    return Path(path).resolve()


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside the SQLite file, else the server's choice.

    MLflow's own default for a SQLite backend is ``./mlruns`` in whatever directory the
    store was first opened from; keeping artifacts next to the database makes the pair
    self-contained. Returns None (let the server decide) for any non-SQLite URI.
    """
    db = sqlite_path(uri)
    if db is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"
    return (db.parent / ARTIFACTS_DIR / slug).as_uri()


#: URI schemes MLflow keeps runs and models in (a database URI may name its driver,
#: ``postgresql+psycopg2``); a URI without a scheme is a local folder.
STORE_SCHEMES = frozenset({"", "file", "sqlite", "http", "https", "postgresql", "mysql",
                           "mssql", "databricks", "databricks-uc", "uc"})


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking URI MLflow cannot use, before it fails deep inside MLflow.

    The message names the scheme or the file, never the whole URI (it may hold a
    password).

    Raises:
        ConfigError: an unknown scheme, or a SQLite database whose folder is a file.

    Example:
        >>> check_tracking_uri("bogus://x")
        Traceback (most recent call last):
        ...
        triage.errors.ConfigError: The MLflow tracking URI has the scheme 'bogus', which ...
    """
    scheme = urlparse(uri).scheme.split("+")[0].lower()
    if len(scheme) == 1:  # a Windows drive letter: a local folder
        scheme = ""
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"The MLflow tracking URI has the scheme '{scheme}', which MLflow keeps no runs "
            f"in; set MLFLOW_TRACKING_URI to sqlite:///path/mlflow.db, http(s)://host:port "
            f"or a database URI (see docs/mlflow.md).")
    db = sqlite_path(uri)
    if db is not None and db.parent.exists() and not db.parent.is_dir():
        raise ConfigError(f"The MLflow tracking database {db} cannot be created: "
                          f"{db.parent} is a file, not a folder.")


def usable_tracking_uri(uri: str | None = None) -> str:
    """The resolved tracking URI (`resolve_tracking_uri`), once it is known to work.

    The URI is checked first (`check_tracking_uri`), and a tracking server must accept
    connections (`ensure_reachable`): every command that records or reads runs or models
    fails in seconds, with one line, rather than after minutes of MLflow's retries.

    Raises:
        ConfigError: the URI is not one MLflow can use.
        EnvironmentalError: the tracking server cannot be reached.
    """
    resolved = resolve_tracking_uri(uri)
    check_tracking_uri(resolved)
    ensure_reachable(resolved)
    return resolved


def client_for(uri: str | None = None) -> MlflowClient:
    """An `MlflowClient` bound to the tracking URI (registry on the same URI), checked as
    `usable_tracking_uri` says.

    Raises:
        ConfigError: the URI is not one MLflow can use.
        EnvironmentalError: the tracking server cannot be reached.
    """
    from mlflow import MlflowClient

    resolved = usable_tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (artifacts beside a SQLite store) if missing.

    Raises:
        TrackingError: the experiment exists but is deleted (MLflow keeps the name).
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = default_artifact_location(client.tracking_uri, name)
        return client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"MLflow experiment '{name}' is deleted; restore it with "
                            f"'mlflow experiments restore --experiment-id "
                            f"{experiment.experiment_id}' or choose another name.")
    return experiment.experiment_id


@contextlib.contextmanager
def _scoped_uri(uri: str) -> Iterator[None]:
    """Set MLflow's global tracking and registry URIs, and restore them (and the env vars
    `mlflow.set_tracking_uri` writes) on exit."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in (TRACKING_URI_ENV, REGISTRY_URI_ENV)}
    saved_tracking = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry = getattr(registry_utils, "_registry_uri", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        registry_utils._registry_uri = saved_registry
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def start_run(experiment: str, *, run_name: str | None = None,
              tags: Mapping[str, Any] | None = None, uri: str | None = None,
              nested: bool = False) -> Iterator[RunLogger]:
    """Start an MLflow run in `experiment` (created if missing) and yield its `RunLogger`.

    The run is the active (fluent) run inside the block, so ``mlflow.pyfunc.log_model``
    and `triage.registry.pyfunc.log_bundle` log into it. It ends FINISHED, or FAILED when
    the block raises (the exception propagates), or KILLED on KeyboardInterrupt.

    Args:
        experiment: experiment name.
        run_name: display name of the run (MLflow draws one when None).
        tags: run tags (stringified; never put identifiers or export paths here).
        uri: tracking URI (see `resolve_tracking_uri`).
        nested: start a child of the active run (e.g. one per held-out device).

    Example:
        >>> with start_run("triage", run_name="demo") as run:  # doctest: +SKIP
        ...     run.log_params(config.flat())
    """
    import mlflow

    resolved = resolve_tracking_uri(uri)
    client = client_for(resolved)
    experiment_id = get_or_create_experiment(client, experiment)
    with _scoped_uri(resolved):
        active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name,
                                  tags=_tag_values(tags or {}), nested=nested)
        status = "FINISHED"
        try:
            yield RunLogger(client, active.info.run_id)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            mlflow.end_run(status=status)


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise TrackingError(f"MLflow {what} names must be non-empty strings, got {key!r}.")
    if len(key) > MAX_KEY:
        raise TrackingError(f"MLflow {what} name '{key[:60]}...' has {len(key)} characters; "
                            f"MLflow allows {MAX_KEY}. Use a shorter name.")
    return key


def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    return {_check_key(k, "tag"): _truncate(_stringify(v), MAX_TAG_VALUE)
            for k, v in tags.items()}


def manifest_digest(path: Path | str) -> str:
    """SHA-256 (64 hex digits) of the manifest file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deidentified_view(df: pd.DataFrame) -> pd.DataFrame:
    """The manifest columns that may reach MLflow (`DEIDENTIFIED_COLUMNS`), as strings.

    Raises:
        TrackingError: a de-identified column is missing from `df`.
    """
    missing = [c for c in DEIDENTIFIED_COLUMNS if c not in df.columns]
    if missing:
        raise TrackingError(f"The manifest lacks column(s) {', '.join(missing)}; a training "
                            f"manifest has {', '.join(DEIDENTIFIED_COLUMNS)}.")
    return df.loc[:, list(DEIDENTIFIED_COLUMNS)].astype(str).reset_index(drop=True)


class RunLogger:
    """Records one MLflow run through a client bound to its tracking URI.

    Attributes:
        run_id: the MLflow run id.
        client: the `MlflowClient` (tracking and registry on the same URI).
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def tracking_uri(self) -> str:
        """The tracking URI the run lives in."""
        return self.client.tracking_uri

    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log parameters, 100 per call; values are stringified (lists and dicts as JSON)
        and cut to MLflow's 6000 characters with a ``...[truncated]`` marker.

        Raises:
            TrackingError: a key is empty or longer than 250 characters.
            mlflow.MlflowException: a key was already logged with a different value.
        """
        from mlflow.entities import Param

        params = [Param(_check_key(k, "parameter"), _truncate(_stringify(v), MAX_PARAM_VALUE))
                  for k, v in flat.items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics at `step` (0 when None).

        NaN and infinite values are logged as they are, not skipped: MLflow stores them
        faithfully (SQL and REST), and a diverged loss or an undefined per-device AUROC
        (one class only) should be visible in the run, not missing from it.

        Raises:
            TrackingError: a value is not a real number (the message names the key).
        """
        import time

        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError) as err:
                raise TrackingError(f"Metric '{key}' is {value!r}, not a number.") from err
            if not math.isfinite(number):
                log.debug("Metric %s is %s at step %s; logged as is.", key, number, step)
            entries.append(Metric(_check_key(key, "metric"), number, timestamp, step or 0))
        for start in range(0, len(entries), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[start:start + METRICS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified, cut to MLflow's 8000 characters)."""
        from mlflow.entities import RunTag

        entries = [RunTag(k, v) for k, v in _tag_values(tags).items()]
        for start in range(0, len(entries), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=entries[start:start + PARAMS_PER_BATCH])

    def _log_file(self, write, artifact_file: str) -> None:
        """Write one artifact through `write(path)` into a temp dir, then upload it."""
        artifact = Path(artifact_file)
        if artifact.is_absolute() or ".." in artifact.parts or not artifact.name:
            raise TrackingError(f"Artifact file '{artifact_file}' must be a relative path "
                                f"inside the run, like 'tables/metrics.csv'.")
        with tempfile.TemporaryDirectory(prefix="triage-artifact-") as tmp:
            local = Path(tmp) / artifact.name
            write(local)
            parent = artifact.parent.as_posix()
            self.client.log_artifact(self.run_id, str(local),
                                     artifact_path=None if parent == "." else parent)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> None:
        """Log a DataFrame as a CSV artifact (no index), e.g. ``tables/per_device.csv``."""
        self._log_file(lambda p: df.to_csv(p, index=False), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log UTF-8 text as an artifact, e.g. ``gate_report.md``."""
        self._log_file(lambda p: p.write_text(text, encoding="utf-8"), artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """Log a JSON-serializable object (NumPy scalars and arrays are converted)."""
        text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
        self._log_file(lambda p: p.write_text(text + "\n", encoding="utf-8"), artifact_file)

    def log_figure(self, figure: Path | str | Any, artifact_path: str = "figures",
                   name: str | None = None) -> None:
        """Log an image file, or a Matplotlib figure (saved as PNG named `name`).

        Raises:
            TrackingError: the file does not exist, or a figure comes without a `name`.
        """
        if hasattr(figure, "savefig"):
            if not name:
                raise TrackingError("log_figure needs a file name (name='x.png') to log a "
                                    "Matplotlib figure.")
            self._log_file(lambda p: figure.savefig(p, dpi=120, bbox_inches="tight"),
                           f"{artifact_path}/{name}")
            return
        path = Path(figure)
        if not path.is_file():
            raise TrackingError(f"Figure file {path} does not exist.")
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        """Log every file under `directory` (recursively) under `artifact_path`.

        Raises:
            TrackingError: `directory` is not a directory.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TrackingError(f"Artifact directory {directory} does not exist.")
        self.client.log_artifacts(self.run_id, str(directory), artifact_path=artifact_path)

    def log_manifest(self, df: pd.DataFrame, *, source_path: Path | str,
                     name: str = "training-manifest", context: str = "training") -> str:
        """Log a manifest as an MLflow dataset input, de-identified, identified by its hash.

        The dataset holds only `DEIDENTIFIED_COLUMNS` (label, device_group, split): no
        study or series UID, patient key, export path or extra column. Its digest is the
        first 32 hex digits of the SHA-256 of the file's bytes (MLflow caps digests at 36
        characters); the full hash is the run tag ``manifest.sha256``. Its source is the
        file *name* only: directories of an export can be identifying. Counts per split,
        device group and label become tags ``manifest.n``, ``manifest.split.<s>``,
        ``manifest.device.<d>``, ``manifest.label.<l>``.

        Args:
            df: the manifest as read (`triage.data.manifest.read_manifest`).
            source_path: the manifest file `df` was read from (hashed, not uploaded).
            name: dataset name.
            context: dataset context tag (``training``, ``calibration``, ...).

        Returns:
            The full SHA-256 of the manifest file.

        Raises:
            TrackingError: `source_path` is missing or `df` lacks a de-identified column.
        """
        from mlflow.data import from_pandas
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        path = Path(source_path)
        if not path.is_file():
            raise TrackingError(f"Manifest file {path} does not exist; log_manifest hashes "
                                f"the file the manifest was read from.")
        sha256 = manifest_digest(path)
        view = deidentified_view(df)
        source = LocalArtifactDatasetSource(path.name)
        dataset = from_pandas(view, source=source, name=name, digest=sha256[:32])
        entity = DatasetInput(dataset._to_mlflow_entity(),
                              tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        self.client.log_inputs(self.run_id, datasets=[entity])
        counts: dict[str, Any] = {"manifest.sha256": sha256, "manifest.n": len(view),
                                  "manifest.name": name}
        for column, prefix in (("split", "split"), ("device_group", "device"),
                               ("label", "label")):
            for value, n in sorted(view[column].value_counts().items()):
                counts[f"manifest.{prefix}.{value}"] = int(n)
        self.set_tags(counts)
        return sha256


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def check_no_identifiers(values: Iterable[str | bytes], identifiers: Iterable[str]) -> None:
    """Raise when any of `values` contains any of `identifiers` (as a substring).

    Bytes values (a database file, an artifact) are searched for the UTF-8 encoding of
    each identifier. The error names positions only, so it does not spread what it found.

    Raises:
        IdentifierLeakError: naming the value's and the identifier's positions.
        ValueError: an identifier is shorter than 4 characters (it would match by chance).

    Example:
        >>> check_no_identifiers(["label=1", "split=train"], ["PAT-0001"])
    """
    needles = [str(i) for i in identifiers]
    short = [n for n, s in enumerate(needles) if len(s) < 4]
    if short:
        raise ValueError(f"Identifiers at positions {short} are shorter than 4 characters; "
                         f"they would match unrelated text.")
    encoded = [s.encode("utf-8") for s in needles]
    for v, value in enumerate(values):
        for n, (text, raw) in enumerate(zip(needles, encoded, strict=True)):
            if (raw in value) if isinstance(value, bytes) else (text in str(value)):
                raise IdentifierLeakError(f"Value #{v} contains identifier #{n} of "
                                          f"{len(needles)}; it must not reach MLflow.")


def scan_files_for_identifiers(paths: Iterable[Path | str], identifiers: Iterable[str]
                               ) -> list[tuple[Path, int]]:
    """(file, identifier position) for every identifier found in the bytes of `paths`.

    Directories are walked recursively. Used by the PHI tests on the SQLite store and the
    artifact folders.
    """
    needles = [str(i).encode("utf-8") for i in identifiers]
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir()
                     else [path])
    hits = []
    for file in files:
        data = file.read_bytes()
        hits.extend((file, n) for n, needle in enumerate(needles) if needle in data)
    return hits
