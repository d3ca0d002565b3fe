"""The model bundle: weights plus everything needed to reproduce the model's inputs and outputs.

A bundle is a directory::

    bundle.json   format, network config, input shape, preprocess/ingest/train configs,
                  device appearances and statistics, temperature, training devices,
                  class names, metrics, routing thresholds, code version, creation time,
                  weights checksum
    weights.pt    the network's state_dict (torch.save; loaded with weights_only=True)
    model.onnx    optional: the network as an ONNX graph (`triage export`), fp32 or int8
                  (bundle.json ``onnx`` says which, with its checksum); ``runtime`` names
                  the engine the temperature and thresholds were fitted with

It is what MLflow stores (`triage.registry.pyfunc.log_bundle`) and what `triage run` loads.
It holds no patient identifiers: configs, per-device-group statistics and aggregate metrics
only (docs/mlflow.md).

`bundle.json` decides routing (thresholds, rules), so the weights checksum inside it is not
enough: `bundle_digest` hashes every file of the folder, MLflow records it outside the
bundle when the model is logged, and `load_bundle(..., expected_digest=)` refuses a bundle
that no longer matches (`BundleDigestError`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import triage
from triage.errors import TriageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
BUNDLE_JSON = "bundle.json"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
_REQUIRED = ("model_config", "in_shape", "preprocess_config", "ingest_config", "train_config",
             "appearances", "device_stats", "train_devices")


class BundleError(TriageError):
    """A model bundle is missing, incomplete, corrupt or of an unsupported format.

    Attributes:
        path: the bundle directory concerned (None for a bundle in memory).
    """

    def __init__(self, path: Path | str | None, message: str) -> None:
        self.path = Path(path) if path is not None else None
        where = f"Model bundle {self.path}" if self.path is not None else "Model bundle"
        super().__init__(f"{where}: {message}")


class BundleDigestError(BundleError):
    """A bundle's files differ from the digest recorded when it was logged (or none was
    recorded): someone edited or replaced them, and the routing they decide is not the
    one that was validated.

    Attributes:
        expected: the recorded digest (None when none was recorded).
        actual: the digest of the files found.
    """

    def __init__(self, path: Path | str | None, expected: str | None, actual: str) -> None:
        self.expected, self.actual = expected, actual
        if expected is None:
            message = ("has no recorded digest, so its files cannot be checked; log it "
                       "again with triage.registry.pyfunc.log_bundle.")
        else:
            message = (f"its files do not match the digest recorded when it was logged "
                       f"(sha256 {expected[:12]}..., found {actual[:12]}...); a file was "
                       f"edited, added or removed since. Load a trusted copy or log it again.")
        super().__init__(path, message)


def bundle_digest(directory: Path | str) -> str:
    """SHA-256 over every file of a bundle folder: relative path and content of each.

    Any edited, added, removed or renamed file changes it; so does a file reached through
    a symbolic link (its content is read).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "bundle.json").write_text("{}")
        >>> bundle_digest(d)[:12]
        'f0da3e98ba0d'
    """
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if not p.is_dir()):
        digest.update(path.relative_to(directory).as_posix().encode("utf-8") + b"\0")
        digest.update(_sha256(path).encode("ascii") + b"\n")
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``triage.__version__``, plus ``+g<commit>`` (and ``.dirty``) inside a git checkout.

    Best effort: no git, no repository or a slow git give the bare version.
    """
    version = triage.__version__
    root = Path(triage.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "triage"], cwd=root,
                               capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return version
    suffix = ".dirty" if dirty.returncode == 1 else ""
    return f"{version}+g{commit.stdout.strip()}{suffix}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _resolve_device(device: str) -> torch.device:
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True, kw_only=True, eq=False)
class ModelBundle:
    """A trained classifier with its provenance.

    Attributes:
        model_config: ``ModelConfig`` as a dict (``name``, ``options``).
        state_dict: the network's weights (CPU tensors); for a bundle loaded with
            ``decode_weights=False``, an `EncodedWeights` that decodes them on first use.
        in_shape: spatial input shape (X, Y, Z) = the preprocess ``target_shape``.
        preprocess_config: ``PreprocessConfig.to_dict()`` used for the training volumes.
        ingest_config: the ingest settings (series selection, load options) as a dict.
        train_config: ``TrainConfig.to_dict()``.
        appearances: per-device-group appearance statistics used by the perturbation.
        device_stats: per-device-group intensity statistics of the training split.
        temperature: calibration temperature (logits are divided by it); 1 = uncalibrated.
        train_devices: device groups seen in training.
        class_names: names of logit 0 and logit 1.
        metrics: aggregate evaluation metrics (JSON numbers).
        routing: the certified routing thresholds per device group
            (``triage.route.FittedThresholds.to_dict()``); empty when none were fitted
            (bundles written before this field load with an empty dict).
        rules: the parsed rules file the thresholds were certified under (what
            ``triage run`` uses unless given ``--rules``); empty when none.
        score_reference: the calibration split's calibrated scores per device group, as
            histograms and logit moments (`triage.monitor.reference.score_reference`), the
            reference of score-drift monitoring; empty in bundles made before it existed.
        runtime: the engine whose scores the temperature and thresholds were fitted on
            (``torch`` or ``onnx``, `triage.model.runtime.Runtime`); the default runtime.
        onnx: the ONNX graph's record (``quantization``: ``none`` or ``int8``, opset,
            exporter versions; ``file`` and ``sha256`` once saved); empty without one.
        onnx_model: the serialized ONNX graph (``model.onnx``), or None.
        pruning: for a channel-pruned variant (`triage.export.prune`): method, ratio,
            channels and parameters before and after, fine-tuning epochs; the network is
            the config's with the state_dict's narrower layers (`fit_widths`). Empty
            otherwise.
        code_version: triage version (+ git commit when built from a checkout).
        created_utc: ISO-8601 creation time.
    """

    model_config: dict[str, Any]
    state_dict: Mapping[str, torch.Tensor]
    in_shape: tuple[int, int, int]
    preprocess_config: dict[str, Any]
    ingest_config: dict[str, Any]
    train_config: dict[str, Any]
    appearances: dict[str, Any]
    device_stats: dict[str, Any]
    temperature: float = 1.0
    train_devices: list[str]
    class_names: tuple[str, str] = ("negative", "positive")
    metrics: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    score_reference: dict[str, Any] = field(default_factory=dict)
    runtime: str = "torch"
    onnx: dict[str, Any] = field(default_factory=dict)
    onnx_model: bytes | None = field(default=None, repr=False)
    pruning: dict[str, Any] = field(default_factory=dict)
    code_version: str = field(default_factory=code_version)
    created_utc: str = field(default_factory=_utc_now)
    _model: Any = field(default=None, init=False, repr=False)
    _sessions: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.in_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"ModelBundle in_shape must be 3 positive sizes (X, Y, Z), "
                             f"got {self.in_shape!r}.")
        object.__setattr__(self, "in_shape", shape)
        temperature = float(self.temperature)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"ModelBundle temperature must be a positive finite number, "
                             f"got {self.temperature!r}.")
        object.__setattr__(self, "temperature", temperature)
        if len(self.class_names) != 2:
            raise ValueError(f"ModelBundle class_names must be two names, got "
                             f"{self.class_names!r}.")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "train_devices", [str(d) for d in self.train_devices])
        if not isinstance(self.routing, dict):
            raise ValueError(f"ModelBundle routing must be a dict (FittedThresholds.to_dict()), "
                             f"got {type(self.routing).__name__}.")
        from triage.model.runtime import Runtime, parse_runtime

        runtime = parse_runtime(self.runtime)
        object.__setattr__(self, "runtime", runtime.value)
        if runtime is Runtime.ONNX and self.onnx_model is None:
            raise ValueError("ModelBundle runtime 'onnx' needs an ONNX graph (onnx_model); "
                             "make one with `triage export --format onnx`.")

    @property
    def quantized(self) -> bool:
        """The ONNX graph is quantized (its scores are not the torch network's)."""
        return self.onnx_model is not None and self.onnx.get("quantization", "none") != "none"

    def check_runtime(self, runtime: str | None = None) -> str:
        """The runtime to use for `runtime` (None: the bundle's own), checked against what
        the bundle holds.

        Raises:
            BundleError: an unknown runtime, ``onnx`` without an ONNX graph, or ``torch``
                for a quantized variant (its thresholds were fitted on the int8 graph).
        """
        from triage.model.runtime import Runtime, parse_runtime

        try:
            chosen = parse_runtime(runtime or self.runtime)
        except ValueError as err:
            raise BundleError(None, str(err)) from err
        if chosen is Runtime.ONNX and self.onnx_model is None:
            raise BundleError(None, "holds no ONNX graph, so it cannot run on the onnx "
                                    "runtime; export one with `triage export --model URI "
                                    "--format onnx`, or run with --runtime torch.")
        if chosen is Runtime.TORCH and self.quantized:
            raise BundleError(None, f"is an {self.onnx.get('quantization')} variant whose "
                                    f"temperature and thresholds were fitted on its quantized "
                                    f"ONNX graph; run it with --runtime onnx (or run its "
                                    f"parent version on torch).")
        return chosen.value

    def build_model(self) -> torch.nn.Module:
        """A fresh network from `model_config` with `state_dict` loaded, in eval mode.

        Raises:
            BundleError: the weights do not fit the network the config describes.
        """
        from triage.model import create_model
        from triage.model.config import ModelConfig

        model = create_model(ModelConfig(**self.model_config), self.in_shape)
        try:
            if self.pruning:
                from triage.model.widths import fit_widths

                fit_widths(model, self.state_dict, self.in_shape)
            model.load_state_dict(self.state_dict)
        except (RuntimeError, ValueError) as err:
            raise BundleError(None, f"the weights do not fit network "
                              f"'{self.model_config.get('name')}': {err}") from err
        return model.eval()

    def _network(self, device: torch.device) -> torch.nn.Module:
        model = self._model
        if model is None:
            model = self.build_model()
            object.__setattr__(self, "_model", model)
        return model.to(device)

    def _batch_array(self, arrays: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(arrays, np.ndarray):
            batch = arrays
        else:
            batch = np.stack([np.asarray(a) for a in arrays]) if len(arrays) else np.empty(
                (0, 1, *self.in_shape), np.float32)
        if batch.ndim == 4:
            batch = batch[:, None]
        if batch.ndim != 5 or batch.shape[1] != 1 or tuple(batch.shape[2:]) != self.in_shape:
            dims = ", ".join(map(str, self.in_shape))
            raise ValueError(f"Expected volumes of shape (N, 1, {dims}) or (N, {dims}) for "
                             f"this model, got {tuple(batch.shape)}; preprocess with the bundle's "
                             f"preprocess_config.")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _onnx_logits(self, batch: np.ndarray, *, device: str, batch_size: int) -> np.ndarray:
        from triage.model.runtime import OnnxSession

        key = str(device)
        session = self._sessions.get(key)
        if session is None:
            assert self.onnx_model is not None
            session = self._sessions[key] = OnnxSession(self.onnx_model, device=key)
        out = [session.run(batch[start:start + batch_size])
               for start in range(0, len(batch), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 2), np.float32)

    def predict_logits(self, arrays: np.ndarray | Sequence[np.ndarray], *,
                       device: str = "auto", batch_size: int = 4,
                       runtime: str | None = None) -> np.ndarray:
        """Raw two-class logits (N, 2), before temperature.

        Args:
            arrays: float volumes (N, 1, X, Y, Z) or (N, X, Y, Z), or a sequence of
                (X, Y, Z) / (1, X, Y, Z) arrays, preprocessed with `preprocess_config`.
            device: ``auto`` (CUDA, then MPS, then CPU) or a torch device string; the
                onnx runtime takes CUDA where ONNX Runtime has it, else the CPU.
            batch_size: volumes per forward pass.
            runtime: ``torch`` or ``onnx``; None: the bundle's `runtime`.

        Raises:
            ValueError: the volumes do not have the bundle's `in_shape`.
            BundleError: the runtime cannot run this bundle (`check_runtime`).
        """
        import torch

        batch = self._batch_array(arrays)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if self.check_runtime(runtime) == "onnx":
            return self._onnx_logits(batch, device=device, batch_size=batch_size)
        target = _resolve_device(device)
        model = self._network(target)
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(batch[start:start + batch_size]).to(target)
                out.append(model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, 2), np.float32)

    def predict_proba(self, arrays: np.ndarray | Sequence[np.ndarray], *,
                      device: str = "auto", batch_size: int = 4,
                      runtime: str | None = None) -> np.ndarray:
        """Positive-class probability (N,) = softmax(logits / temperature)[:, 1]."""
        logits = self.predict_logits(arrays, device=device, batch_size=batch_size,
                                     runtime=runtime)
        scaled = logits.astype(np.float64) / self.temperature
        # softmax of two classes is the sigmoid of the difference (numerically stable)
        diff = scaled[:, 1] - scaled[:, 0]
        return (0.5 * (1.0 + np.tanh(0.5 * diff))).astype(np.float32)

    def with_temperature(self, temperature: float) -> ModelBundle:
        """A copy with another calibration temperature (weights shared, not copied)."""
        return dataclasses.replace(self, temperature=temperature)

    def metadata(self) -> dict[str, Any]:
        """Everything but the weights, JSON-ready (what bundle.json holds)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.init and f.name not in ("state_dict", "onnx_model")}
        data["in_shape"] = list(self.in_shape)
        data["class_names"] = list(self.class_names)
        return json.loads(json.dumps(data, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be stored in bundle.json; convert it to "
                    f"numbers, strings, lists or dicts.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(bundle: ModelBundle, directory: Path | str) -> Path:
    """Write `bundle` to `directory` atomically: a reader sees the old bundle or the new one.

    The files are written into a temporary sibling directory that is then renamed into
    place; an existing bundle at `directory` is replaced.

    Returns:
        `directory` as a Path.

    Raises:
        BundleError: `directory` exists and is neither empty nor a bundle (refusing to
            replace unrelated files).
    """
    import torch

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or (
            any(directory.iterdir()) and not (directory / BUNDLE_JSON).is_file())):
        raise BundleError(directory, "exists and is not a model bundle; choose an empty or "
                                     "new directory.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp",
                                dir=directory.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in bundle.state_dict.items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        meta = {"format": BUNDLE_FORMAT, **bundle.metadata(), "weights": WEIGHTS_FILE,
                "weights_sha256": _sha256(tmp / WEIGHTS_FILE)}
        if bundle.onnx_model is not None:
            (tmp / ONNX_FILE).write_bytes(bundle.onnx_model)
            meta["onnx"] = {**meta["onnx"], "file": ONNX_FILE,
                            "sha256": _sha256(tmp / ONNX_FILE)}
        else:
            meta["onnx"] = {}
        with open(tmp / BUNDLE_JSON, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _weights_path(directory: Path, name: Any) -> Path:
    """The weights file `name` names, refused unless it is a plain file name in the bundle
    folder (an absolute path or ``..`` would load weights nobody validated)."""
    if not isinstance(name, str) or not name or name in (".", "..") \
            or Path(name).name != name or "\\" in name:
        raise BundleError(directory, f"{BUNDLE_JSON} names weights {name!r} outside the bundle "
                                     f"folder; a bundle names its weights file by a plain "
                                     f"file name inside it (e.g. {WEIGHTS_FILE!r}).")
    path = directory / name
    if not path.resolve().is_relative_to(directory.resolve()):
        raise BundleError(directory, f"the weights file {name} links outside the bundle "
                                     f"folder; copy the weights into it.")
    return path


def _read_onnx(directory: Path, record: Any) -> bytes | None:
    """The ONNX graph bundle.json names (checked against its checksum), or None."""
    if not isinstance(record, dict) or not record.get("file"):
        return None
    path = _weights_path(directory, record["file"])
    if not path.is_file():
        raise BundleError(directory, f"the ONNX graph {path.name} named in {BUNDLE_JSON} is "
                                     f"missing.")
    if record.get("sha256") and _sha256(path) != record["sha256"]:
        raise BundleError(directory, f"{path.name} does not match its checksum in "
                                     f"{BUNDLE_JSON}; the file is corrupt or was replaced.")
    return path.read_bytes()


class EncodedWeights(Mapping[str, "torch.Tensor"]):
    """A bundle's weights file as read from disk (checked against its checksum), decoded
    into tensors only when first read.

    `load_bundle(..., decode_weights=False)` gives it as the bundle's `state_dict`, so that
    a process that never runs the model - the driver of a Ray run, whose inference actors
    score - neither imports torch (~1 CPU-s and ~150 MiB) nor holds the tensors. Pickled
    (to an actor), it travels as the file's bytes; `torch.load(..., weights_only=True)`
    decodes it where it is used.
    """

    def __init__(self, data: bytes, directory: Path, name: str) -> None:
        self._data, self._directory, self._name = data, directory, name
        self._state: dict[str, torch.Tensor] | None = None

    def decode(self) -> dict[str, torch.Tensor]:
        """The tensors (decoded once).

        Raises:
            BundleError: the bytes are not a state_dict of tensors.
        """
        if self._state is None:
            self._state = _decode_weights(self._data, self._directory, self._name)
        return self._state

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.decode()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decode())

    def __len__(self) -> int:
        return len(self.decode())

    def __reduce__(self) -> tuple[Any, ...]:  # the bytes, not the tensors
        return EncodedWeights, (self._data, self._directory, self._name)


def _decode_weights(data: bytes, directory: Path, name: str) -> dict[str, torch.Tensor]:
    """``torch.load(..., weights_only=True)`` of a weights file's bytes, checked."""
    import io

    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a garbled file
        raise BundleError(directory, f"{name} cannot be read as weights "
                                     f"({type(err).__name__}: {err}).") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise BundleError(directory, f"{name} is not a state_dict of tensors.")
    return state


def load_bundle(directory: Path | str, *, expected_digest: str | None = None,
                decode_weights: bool = True) -> ModelBundle:
    """Read a bundle written by `save_bundle`.

    Args:
        directory: the bundle folder.
        expected_digest: the `bundle_digest` recorded when the bundle was logged; when
            given, a folder whose files no longer match it is refused.
        decode_weights: False leaves the weights encoded (`EncodedWeights`: checked
            against their checksum, decoded where the model runs), so that loading needs
            no torch.

    Raises:
        BundleDigestError: the files do not match `expected_digest`.
        BundleError: the directory or a file is missing, bundle.json is not valid JSON or
            lacks a field, the weights file is named outside the folder, the weights do
            not match their checksum or cannot be read, or the bundle was written by a
            newer triage (format > `BUNDLE_FORMAT`).
    """
    directory = Path(directory)
    meta_path = directory / BUNDLE_JSON
    if not directory.is_dir():
        raise BundleError(directory, "is not a directory; pass the folder that holds "
                                     f"{BUNDLE_JSON} and {WEIGHTS_FILE}.")
    if expected_digest is not None:
        actual = bundle_digest(directory)
        if actual != expected_digest:
            raise BundleDigestError(directory, expected_digest, actual)
    if not meta_path.is_file():
        raise BundleError(directory, f"{BUNDLE_JSON} is missing; this is not a model bundle.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(directory, f"{BUNDLE_JSON} is not valid JSON ({err}).") from err
    if not isinstance(meta, dict):
        raise BundleError(directory, f"{BUNDLE_JSON} holds a {type(meta).__name__}, not an "
                                     f"object.")
    fmt = meta.get("format")
    if not isinstance(fmt, int) or fmt < 1:
        raise BundleError(directory, f"{BUNDLE_JSON} has no valid 'format' (got {fmt!r}).")
    if fmt > BUNDLE_FORMAT:
        raise BundleError(directory, f"bundle format {fmt} is newer than this triage "
                                     f"{triage.__version__} reads (format {BUNDLE_FORMAT}); "
                                     f"upgrade triage.")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise BundleError(directory, f"{BUNDLE_JSON} lacks field(s) {', '.join(missing)}.")
    weights = _weights_path(directory, meta.get("weights", WEIGHTS_FILE))
    if not weights.is_file():
        raise BundleError(directory, f"the weights file {weights.name} is missing.")
    expected = meta.get("weights_sha256")
    data = weights.read_bytes()  # read once: checked, then decoded from these bytes
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(directory, f"{weights.name} does not match its checksum in "
                                     f"{BUNDLE_JSON}; the file is corrupt or was replaced.")
    encoded = EncodedWeights(data, directory, weights.name)
    state: Mapping[str, torch.Tensor] = encoded.decode() if decode_weights else encoded
    fields = {f.name for f in dataclasses.fields(ModelBundle) if f.init}
    kwargs = {k: v for k, v in meta.items() if k in fields and k != "onnx_model"}
    kwargs["onnx_model"] = _read_onnx(directory, meta.get("onnx") or {})
    try:
        return ModelBundle(state_dict=state, **kwargs)
    except (TypeError, ValueError) as err:
        raise BundleError(directory, f"{BUNDLE_JSON} has an invalid value: {err}") from err
