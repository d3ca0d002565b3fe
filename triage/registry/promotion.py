"""The model registry workflow: register a run's model, promote it through gates, roll back.

Aliases, not stages: ``@champion`` is the model `triage run` loads, ``@previous`` the one it
replaced. MLflow keeps no history of alias moves, so every move is appended to an audit
trail on the registered model itself (tags ``audit.NNNN`` holding JSON, and one line per
move in its description). Aliases are read with `get_model_version_by_alias`, never from
`search_model_versions` (whose aliases come back empty on SQL backends, MLflow #9783).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.errors import TriageError
from triage.registry.gates import (
    GateConfig,
    certified_alpha,
    certified_delta,
    certified_groups,
    gate_report,
    report_markdown,
)
from triage.registry.tracking import client_for, resolve_tracking_uri, start_run

log = logging.getLogger(__name__)

CHAMPION, PREVIOUS = "champion", "previous"
AUDIT_PREFIX = "audit."
PROMOTION_EXPERIMENT = "triage-promotion"


class RegistryError(TriageError):
    """A registry operation cannot be done as asked."""


@dataclass
class PromotionResult:
    """What `promote` decided.

    Attributes:
        name, version: the challenger.
        champion: the champion's version before the decision (None for a first version).
        passed: every gate passed.
        promoted: the alias moved (False on a dry run or a failed gate).
        report: the gate table.
        report_uri: where the gate report artifact lives (``runs:/<id>/gate_report.md``).
    """

    name: str
    version: str
    champion: str | None
    passed: bool
    promoted: bool
    report: pd.DataFrame
    report_uri: str


def _client(tracking_uri: str | None) -> Any:
    return client_for(resolve_tracking_uri(tracking_uri))


def alias_version(name: str, alias: str, *, tracking_uri: str | None = None) -> str | None:
    """The version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def register_version(run_id: str, name: str, *, tracking_uri: str | None = None) -> str:
    """Register the model logged by training run `run_id` as a new version of `name`.

    The version is tagged with the training manifest's hash, the device groups, the
    calibration metrics and the rules version (when the bundle carries rules).

    Raises:
        RegistryError: `name` is no MLflow model name, or the run does not exist or
            logged no model.
    """
    if not name.strip() or "/" in name or ":" in name:  # MLflow checks after the download
        raise RegistryError(f"--name {name!r} is not a model name MLflow accepts: give a "
                            f"non-empty name without '/' or ':', such as 'triage'.")
    import mlflow
    from mlflow.exceptions import MlflowException

    from triage.registry.pyfunc import DIGEST_TAG
    from triage.registry.tracking import _scoped_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise RegistryError(f"MLflow run {run_id} does not exist in {uri}.") from err
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'")
    if not models:
        raise RegistryError(f"MLflow run {run_id} logged no model; train with `triage train` "
                            f"(which logs the bundle) and register that run.")
    model_id = models[0].model_id
    with _scoped_uri(uri):
        version = mlflow.register_model(f"models:/{model_id}", name).version
    metrics = run.data.metrics
    tags = {
        "manifest.sha256": run.data.tags.get("manifest.sha256", ""),
        "train_devices": run.data.tags.get("triage.train_devices", ""),
        "holdout_device": run.data.tags.get("triage.holdout_device", ""),
        "calibration.temperature": metrics.get("calibration.temperature", float("nan")),
        "calibration.test_ece": metrics.get("test.cal.all.ece", float("nan")),
        "calibration.calib_ece": metrics.get("calib.cal.all.ece", float("nan")),
        "rules_version": run.data.tags.get("triage.rules_version", ""),
        "source_run_id": run_id,
        "bundle.sha256": models[0].tags.get(DIGEST_TAG, ""),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    return str(version)


def _misses(bundle: Any, predictions: pd.DataFrame) -> tuple[int, int]:
    """``(positives the bundle's certified thresholds route routine, positives)``.

    A device group without a certified threshold routes nothing ``routine`` (its studies
    go to review), so a bundle without routing thresholds misses none.
    """
    positives = predictions[predictions["label"] == 1]
    lows = routine_thresholds(bundle)
    routed = [lows.get(device) is not None and p < lows[device]
              for device, p in zip(positives["device_group"], positives["p_calibrated"],
                                   strict=True)]
    return int(np.sum(routed)), len(routed)


def routine_thresholds(bundle: Any) -> dict[str, float | None]:
    """Per-device ``routine`` threshold from the bundle's routing record (may be empty)."""
    routing = getattr(bundle, "routing", None) or {}
    if not routing:
        return {}
    from triage.route.thresholds import FittedThresholds

    fitted = FittedThresholds.from_dict(routing)
    return {group: fitted.groups[group].t_low for group in fitted.groups}


def _audit(client: Any, name: str, entry: dict[str, Any]) -> None:
    model = client.get_registered_model(name)
    n = sum(1 for key in (model.tags or {}) if key.startswith(AUDIT_PREFIX)) + 1
    client.set_registered_model_tag(name, f"{AUDIT_PREFIX}{n:04d}", json.dumps(entry))
    line = (f"{entry['at']} {entry['action']}: @{entry['alias']} -> v{entry['to']}"
            f"{' (from v' + entry['from'] + ')' if entry.get('from') else ''}"
            f"{' report ' + entry['report'] if entry.get('report') else ''}")
    description = (model.description or "").rstrip()
    client.update_registered_model(name, description=(description + "\n" + line).strip())


def audit_trail(name: str, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every recorded alias move of `name`, oldest first."""
    model = _client(tracking_uri).get_registered_model(name)
    entries = sorted((k, v) for k, v in (model.tags or {}).items()
                     if k.startswith(AUDIT_PREFIX))
    return [json.loads(v) for _, v in entries]


def promote(name: str, version: str, *, manifest_path: Path | str, ingest_dir: Path | str,
            gates: GateConfig | None = None, splits: tuple[str, ...] = (),
            dry_run: bool = False, tracking_uri: str | None = None) -> PromotionResult:
    """Score challenger and champion on one promotion manifest; move ``@champion`` only if
    every gate passes (and not `dry_run`). See the module docstring.

    Raises:
        RegistryError: the version does not exist or already holds ``@champion``.
    """
    from mlflow.exceptions import MlflowException

    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest
    from triage.registry.evaluate import evaluate_bundle
    from triage.registry.pyfunc import load_bundle_from_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = client_for(uri)
    try:
        client.get_model_version(name, version)
    except MlflowException as err:
        raise RegistryError(f"Model '{name}' has no version {version} in {uri}.") from err
    champion = alias_version(name, CHAMPION, tracking_uri=uri)
    if champion == str(version):
        raise RegistryError(f"Version {version} of '{name}' already holds @champion.")
    gates = gates or GateConfig.from_yaml()
    resolved = resolve_samples(read_manifest(manifest_path), ingest_dir)
    samples = resolved.split(*splits) if splits else resolved.samples

    challenger_bundle = load_bundle_from_uri(f"models:/{name}/{version}", tracking_uri=uri)
    chall_metrics, chall_pred = evaluate_bundle(challenger_bundle, samples, ingest_dir)
    champ_metrics, champion_certified = None, set()
    if champion is not None:
        champion_bundle = load_bundle_from_uri(f"models:/{name}/{champion}", tracking_uri=uri)
        champ_metrics, _ = evaluate_bundle(champion_bundle, samples, ingest_dir)
        champion_certified = certified_groups(champion_bundle.routing)
    misses, positives = _misses(challenger_bundle, chall_pred)
    report = gate_report(chall_metrics, champ_metrics, gates,
                         miss_rate=misses / positives if positives else 0.0,
                         miss_counts=(misses, positives),
                         delta=certified_delta(challenger_bundle),
                         certified=certified_groups(challenger_bundle.routing),
                         champion_certified=champion_certified,
                         alpha=certified_alpha(challenger_bundle))
    passed = bool(report["passed"].all())

    with start_run(PROMOTION_EXPERIMENT, run_name=f"{name}-v{version}", uri=uri,
                   tags={"triage.stage": "promotion", "model": name,
                         "challenger": str(version), "champion": champion or ""}) as run:
        run.log_table(report, "gate_report.csv")
        run.log_table(chall_metrics, "challenger_metrics.csv")
        if champ_metrics is not None:
            run.log_table(champ_metrics, "champion_metrics.csv")
        run.log_text(report_markdown(report) + "\n", "gate_report.md")
        report_uri = f"runs:/{run.run_id}/gate_report.md"
    # one tag per (gate, group): it fails when any of its rows fails
    for (gate, group), rows in report.groupby(["gate", "group"], sort=False):
        client.set_model_version_tag(name, str(version), f"gate.{gate}.{group}",
                                     "pass" if rows["passed"].all() else "fail")
    client.set_model_version_tag(name, str(version), "gate.verdict",
                                 "pass" if passed else "fail")
    client.set_model_version_tag(name, str(version), "gate.report", report_uri)

    promoted = passed and not dry_run
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        if champion is not None:
            client.set_registered_model_alias(name, PREVIOUS, champion)
        _audit(client, name, {"at": _now(), "action": "promote", "alias": CHAMPION,
                              "to": str(version), "from": champion or "",
                              "report": report_uri})
    return PromotionResult(name, str(version), champion, passed, promoted, report, report_uri)


def rollback(name: str, *, tracking_uri: str | None = None) -> tuple[str, str]:
    """Give ``@champion`` back to the ``@previous`` version (which then holds
    ``@previous`` no more: the rolled-back version takes it). Returns (from, to).

    Raises:
        RegistryError: no ``@previous`` to restore.
    """
    client = _client(tracking_uri)
    previous = alias_version(name, PREVIOUS, tracking_uri=tracking_uri)
    current = alias_version(name, CHAMPION, tracking_uri=tracking_uri)
    if previous is None:
        raise RegistryError(f"Model '{name}' has no @previous version to roll back to.")
    client.set_registered_model_alias(name, CHAMPION, previous)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    _audit(client, name, {"at": _now(), "action": "rollback", "alias": CHAMPION,
                          "to": previous, "from": current or ""})
    return current or "", previous


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
