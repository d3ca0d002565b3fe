"""`recalibrate`: a new model version with the same weights, refitted on review feedback.

The champion's network is kept; its temperature and its routing thresholds are fitted
again on the valid calibration sample of the label store (`triage.feedback.sample`),
using only labels that never calibrated a version before. The new version is registered
with lineage tags (parent, label window, counts). The labels of the devices whose routine
threshold it certified are marked as consumed by it; those of a device it did not certify
stay for the next recalibration (`spent_labels`), so a slow device's positives add up until
its certificate can be computed. It is *not* promoted: ``triage promote`` gates it like any
challenger.

The logits are recovered from the journal: ``d = T_run * logit(p_calibrated)``, with the
temperature the run recorded. ``p_calibrated`` has 6 decimals, so ``d`` is exact to about
1e-5 for p in [1e-4, 1 - 1e-4]; probabilities printed as 0 or 1 are clipped to
[5e-7, 1 - 5e-7] (|d / T_run| <= 14.5), which only matters for the most confident studies.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from triage.feedback.errors import RecalibrationError
from triage.feedback.sample import CalibrationSample, select_sample
from triage.feedback.store import Label, LabelStore
from triage.route.fit import HIGH_FIELDS, LOW_FIELDS, refused_by_shift
from triage.route.guarantee import SOURCE_POOLED, Guarantee, label_parts
from triage.route.thresholds import FittedThresholds, GroupThresholds, cp_lower, cp_upper

LOGGER = logging.getLogger(__name__)
EXPERIMENT = "triage-recalibration"
P_CLIP = 5e-7
#: Version tag naming the first version of a family of versions sharing one network.
ROOT_TAG = "lineage.root_version"


@dataclass(frozen=True)
class Recalibration:
    """What `recalibrate` registered.

    Attributes:
        name: the registered model.
        version: the new version.
        parent: the version it was recalibrated from.
        temperature: the refitted temperature (parent's in `parent_temperature`).
        parent_temperature: the parent's temperature.
        n_labels: studies calibrated on; `n_positive` of them with a finding.
        n_positive: positives among them.
        devices: device group -> {"n", "positives", "certified", "carried", "consumed"}:
            ``carried`` when a threshold keeps the parent's certificate (`carry_over`); its
            labels are consumed when its routine threshold was certified on them
            (`spent_labels`).
        kept: labels left for the next recalibration (devices without a certified routine
            threshold).
        window: first and last day (UTC) the studies were triaged.
        read_window: first and last read date (empty when no reader gave one).
        skipped: why other labels were not used (reason -> count).
        incomplete_runs: runs left out for unlabelled sampled studies.
        run_id: the MLflow run that logged the new bundle.
    """

    name: str
    version: str
    parent: str
    temperature: float
    parent_temperature: float
    n_labels: int
    n_positive: int
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    kept: int = 0
    window: tuple[str, str] = ("", "")
    read_window: tuple[str, str] = ("", "")
    skipped: dict[str, int] = field(default_factory=dict)
    incomplete_runs: int = 0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def logits_from_labels(labels: list[Label]) -> np.ndarray:
    """Two-class logits (N, 2) = (0, T_run * logit(p)) recovered from the journal values."""
    p = np.clip(np.array([lb.p_calibrated for lb in labels], np.float64), P_CLIP, 1 - P_CLIP)
    t = np.array([lb.temperature for lb in labels], np.float64)
    d = t * np.log(p / (1 - p))
    return np.stack([np.zeros_like(d), d], axis=1)


def refit(labels: list[Label], thresholds_config: Any) -> tuple[float, Any]:
    """Temperature and per-device thresholds fitted on `labels`.

    Raises:
        RecalibrationError: fewer than one positive and one negative label.
    """
    from triage.calibrate import fit_temperature, probabilities
    from triage.route import fit_thresholds

    y = np.array([lb.finding for lb in labels], np.int64)
    if y.size == 0 or y.min() == y.max():
        raise RecalibrationError(f"The calibration sample holds {int(y.sum())} positive and "
                                 f"{int(y.size - y.sum())} negative labels; recalibration "
                                 f"needs both. Import more reviewed studies.")
    logits = logits_from_labels(labels)
    temperature = fit_temperature(logits, y)
    p = probabilities(logits, temperature)
    fitted = fit_thresholds(p, y, [lb.device_group for lb in labels], thresholds_config)
    return temperature, fitted


def fresh_evidence(labels: list[Label], temperature: float
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Device group -> calibrated probabilities (at `temperature`) and findings of
    `labels`: what `carry_over` checks a carried threshold against."""
    from triage.calibrate import probabilities

    p = probabilities(logits_from_labels(labels), temperature)
    y = np.array([lb.finding for lb in labels], np.int64)
    groups = np.array([lb.device_group for lb in labels])
    return {str(g): (p[groups == g], y[groups == g]) for g in np.unique(groups)}


def _window(values: list[str]) -> tuple[str, str]:
    days = sorted(v[:10] for v in values if v)
    return (days[0], days[-1]) if days else ("", "")


def _family(client: Any, name: str, parent: str, versions: set[str]) -> set[str]:
    """The versions among `versions` that share the parent's network."""
    from mlflow.exceptions import MlflowException

    def root(version: str) -> str | None:
        try:
            tags = client.get_model_version(name, version).tags or {}
        except MlflowException:
            return None
        return tags.get(ROOT_TAG, version)

    mine = root(parent)
    return {v for v in versions | {parent} if root(v) == mine}


def _rules(bundle: Any) -> Any:
    from triage.route.rules import recorded_rules

    return recorded_rules(bundle.rules)


def choose_sample(store: LabelStore, *, name: str, versions: set[str], ruleset: Any
                  ) -> CalibrationSample:
    """The valid calibration sample of the store for `name` at `versions` (`select_sample`)."""
    return select_sample(
        store.labels(), store.sample(), model_name=name, versions=versions,
        rules_version=ruleset.full_version, stages={r.id: r.stage for r in ruleset.rules},
        consumed=set(store.consumed()),
        conflicts={(c.study_uid, c.model_name, c.model_version) for c in store.conflicts()})


def recalibrate(model_uri: str, store_path: Path | str, *,
                tracking_uri: str | None = None) -> Recalibration:
    """Register a recalibrated version of a registered model (see the module docstring).

    Args:
        model_uri: ``models:/NAME@alias`` or ``models:/NAME/VERSION``.
        store_path: the label store.
        tracking_uri: MLflow tracking URI (`resolve_tracking_uri`).

    Raises:
        RecalibrationError: not a registered model URI, or no valid sample with both
            classes.
        LabelStoreError: the store cannot be opened.
    """
    from triage.registry.bundle import code_version
    from triage.registry.tracking import client_for, resolve_tracking_uri
    from triage.run.model import load_model

    uri = resolve_tracking_uri(tracking_uri)
    if not model_uri.startswith("models:/"):
        raise RecalibrationError(f"--model must be a registered model URI such as "
                                 f"models:/NAME@champion, got {model_uri!r}.")
    if not Path(store_path).is_file():
        raise RecalibrationError(f"Label store {store_path} does not exist; import reviewed "
                                 f"worklists with `triage feedback import` first.")
    with LabelStore(store_path):  # a file that is not a label store: before the model loads
        pass
    loaded = load_model(model_uri, tracking_uri=uri)
    if not loaded.version:
        raise RecalibrationError(f"Model {model_uri!r} does not resolve to a registered "
                                 f"version; use models:/NAME@champion or models:/NAME/N.")
    name, parent, bundle = loaded.name, loaded.version, loaded.bundle
    client = client_for(uri)
    parent_tags = client.get_model_version(name, parent).tags or {}
    ruleset = _rules(bundle)
    with LabelStore(store_path) as store:
        versions = {lb.model_version for lb in store.labels() if lb.model_name == name}
        family = _family(client, name, parent, versions)
        sample = choose_sample(store, name=name, versions=family, ruleset=ruleset)
        if not sample.labels:
            raise RecalibrationError(
                f"The label store {store_path} has no unused labels of {name} "
                f"(versions {', '.join(sorted(family))}) in a calibration sample "
                f"(skipped: {json.dumps(sample.skipped)}; {sample.incomplete_runs} runs wait "
                f"for {sample.missing} unlabelled sampled studies). Run `triage run "
                f"--audit-fraction F` and import the reviewed worklists.")
        temperature, fitted = refit(sample.labels, ruleset.thresholds)
        spent = spent_labels(sample.labels, fitted)
        fitted = carry_over(fitted, bundle.routing, parent=parent,
                            scale=bundle.temperature / temperature,
                            fresh=fresh_evidence(sample.labels, temperature))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        new = dataclasses.replace(bundle, temperature=temperature, routing=fitted.to_dict(),
                                  created_utc=now, code_version=code_version())
        result = _register(new, sample, name=name, parent=parent, parent_tags=parent_tags,
                           parent_temperature=bundle.temperature, fitted=fitted,
                           rules_version=ruleset.full_version, uri=uri, client=client)
        store.consume(spent, result.version, now)
    return result


def carry_over(fitted: Any, parent_routing: Any, *, parent: str, scale: float,
               fresh: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Any:
    """`fitted` with the parent's certified thresholds where the new labels were too few to
    certify them again.

    The new version shares the parent's network, so a parent threshold is a rule on the
    network's logit difference d: routine when ``d < T_parent * logit(t_low)``. With the new
    temperature that same rule reads ``p < sigmoid(scale * logit(t_low))``, ``scale =
    T_parent / T_new``; it routes every study as the parent did, and the parent's
    certificate (counts, bounds, guarantee label) still covers it. Without this a device the
    champion certified would lose its thresholds whenever a week's labels are too few to
    certify it again (it gathers ~1 audited positive a day; its routine certificate needs
    100-300), and the routing-guarantee gate would refuse every such version.

    A side is carried only for lack of data, never against evidence: the device has fewer
    positives (routine) or negatives (urgent; under ``pac`` also positives) than its own
    certificate needs, where the parent's threshold was the pooled one the new shift
    check did not refuse the pooled threshold for it (`refused_by_shift`), and the fresh
    labels (`fresh`: device group -> calibrated probabilities and findings under the new
    temperature) do not refute it: the carried routine threshold is dropped when the
    one-sided Clopper-Pearson lower bound (level ``delta``) of its miss rate on the fresh
    positives exceeds ``alpha``, the urgent one when the upper bound of its PPV on the
    fresh studies above it falls below ``ppv_target``. A threshold
    certified on the new labels always wins; a carried one names the version whose
    certificate it keeps (``low_carried_from``, ``high_carried_from``).

    Example:
        >>> from triage.route.thresholds import FittedThresholds, ThresholdConfig
        >>> old = FittedThresholds(ThresholdConfig(), {"a": GroupThresholds(
        ...     "a", 400, 3000, t_low=0.02, low_guarantee="pac/device a=0.01 d=0.05")})
        >>> new = FittedThresholds(ThresholdConfig(), {"a": GroupThresholds("a", 10, 80)})
        >>> a = carry_over(new, old.to_dict(), parent="3", scale=0.5).groups["a"]
        >>> (round(a.t_low, 4), a.n_pos, a.low_carried_from, a.low_guarantee)
        (0.125, 10, '3', 'pac/device a=0.01 d=0.05')
        >>> enough = FittedThresholds(ThresholdConfig(), {"a": GroupThresholds("a", 400, 80)})
        >>> carry_over(enough, old.to_dict(), parent="3", scale=0.5).groups["a"].t_low is None
        True
    """
    if not parent_routing:
        return fitted
    previous = FittedThresholds.from_dict(parent_routing, source=f"version {parent}'s routing")
    cfg = fitted.config
    pac = cfg.guarantee == Guarantee.PAC

    def moved(t: float) -> float:
        logit = math.log(t / (1.0 - t))
        return float(1.0 / (1.0 + math.exp(-scale * logit)))

    def pooled(label: str) -> bool:
        return label_parts(label)[1] == SOURCE_POOLED

    def refuted(name: str, side: str, t: float) -> bool:
        p, y = (fresh or {}).get(name, (np.empty(0), np.empty(0, np.int64)))
        if side == "low":  # misses: positives the carried threshold would clear
            k, n = int(np.sum((y == 1) & (p < t))), int(np.sum(y == 1))
            wrong = n > 0 and float(cp_lower(k, n, cfg.delta)) > cfg.alpha
        else:  # precision of the urgent route on the fresh studies above it
            k, n = int(np.sum((y == 1) & (p >= t))), int(np.sum(p >= t))
            wrong = n > 0 and float(cp_upper(k, n, cfg.delta)) < cfg.ppv_target
        if wrong:
            LOGGER.warning("Device group %s: the fresh labels refute version %s's %s "
                           "threshold (%d of %d); it is not carried over.", name, parent,
                           "routine" if side == "low" else "urgent", k, n)
        return wrong

    groups = dict(fitted.groups)
    for name, old in previous.groups.items():
        new = groups.get(name) or GroupThresholds(name, 0, 0)
        few_pos = new.n_pos < cfg.required_positives
        few_neg = new.n_neg < cfg.required_negatives or (pac and few_pos)
        changes: dict[str, Any] = {}
        if (new.t_low is None and old.t_low is not None and few_pos
                and not (pooled(old.low_guarantee) and refused_by_shift(new.low_check))
                and not refuted(name, "low", moved(old.t_low))):
            changes.update({f: getattr(old, f) for f in LOW_FIELDS}, t_low=moved(old.t_low),
                           low_check=old.low_check,
                           low_carried_from=old.low_carried_from or parent)
        if (new.t_high is None and old.t_high is not None and few_neg
                and not (pooled(old.high_guarantee) and refused_by_shift(new.high_check))
                and not refuted(name, "high", moved(old.t_high))):
            changes.update({f: getattr(old, f) for f in HIGH_FIELDS}, t_high=moved(old.t_high),
                           high_check=old.high_check,
                           high_carried_from=old.high_carried_from or parent)
        if changes:
            groups[name] = dataclasses.replace(new, **changes)
    return dataclasses.replace(fitted, groups=groups)


def spent_labels(labels: list[Label], fitted: Any) -> list[Label]:
    """The labels a recalibration consumes: those of the device groups whose routine
    threshold `fitted` certified (on the device's own labels or a pooled threshold).

    A device left uncertified keeps its labels for the next recalibration. Consuming them
    would restart its count at every recalibration that certifies another device, and a
    slow device would never reach the positives its certificate needs (docs/benchmarks.md,
    "Guarantee modes and the feedback loop"). Waiting chooses nothing from the scores: the
    routine threshold is certified once the device's positives reach the count its bound
    needs (`min_positives_needed`; the lowest candidate threshold has no misses), so the
    later certificate is computed on positives whose number, not whose scores, decided when.
    """
    certified = certified_here(fitted)
    return [lb for lb in labels if lb.device_group in certified]


def certified_here(fitted: Any) -> set[str]:
    """The device groups whose routine threshold `fitted` certified on its own labels (not
    carried over from a parent: `carry_over`); their labels are the ones consumed."""
    return {name for name, group in fitted.groups.items()
            if group.t_low is not None and not group.low_carried_from}


def _register(bundle: Any, sample: CalibrationSample, *, name: str, parent: str,
              parent_tags: dict[str, str], parent_temperature: float, fitted: Any,
              rules_version: str, uri: str, client: Any) -> Recalibration:
    """Log `bundle` in a run of `EXPERIMENT`, register it and tag its lineage."""
    from triage.registry.bundle import save_bundle
    from triage.registry.promotion import register_version
    from triage.registry.pyfunc import log_bundle
    from triage.registry.tracking import start_run

    labels = sample.labels
    y = np.array([lb.finding for lb in labels])
    devices: dict[str, dict[str, Any]] = {}
    for lb in labels:
        entry = devices.setdefault(lb.device_group, {"n": 0, "positives": 0})
        entry["n"] += 1
        entry["positives"] += lb.finding
    consumed = certified_here(fitted)
    for group, entry in devices.items():
        mine = fitted.groups[group]
        entry["certified"] = bool(mine.certified)
        entry["carried"] = bool(mine.low_carried_from or mine.high_carried_from)
        entry["consumed"] = group in consumed
    kept = sum(entry["n"] for entry in devices.values() if not entry["consumed"])
    window = _window([lb.processed_at for lb in labels])
    read_window = _window([lb.read_date for lb in labels])
    with tempfile.TemporaryDirectory(prefix="triage-recalibrate-") as tmp:
        bundle_dir = save_bundle(bundle, Path(tmp) / "bundle")
        tags = {"triage.stage": "recalibration", "model": name, "parent_version": parent,
                "manifest.sha256": parent_tags.get("manifest.sha256", ""),
                "triage.train_devices": parent_tags.get("train_devices", ""),
                "triage.holdout_device": parent_tags.get("holdout_device", ""),
                "triage.rules_version": rules_version}
        with start_run(EXPERIMENT, run_name=f"{name}-v{parent}-recalibrated", uri=uri,
                   tags=tags) as run:
            run.log_metrics({"calibration.temperature": bundle.temperature,
                             "recalibration.labels": len(labels),
                             "recalibration.positives": int(y.sum()),
                             "recalibration.kept_labels": kept,
                             "recalibration.certified_devices": sum(
                                 d["certified"] for d in devices.values())})
            run.log_json({"devices": devices, "skipped": sample.skipped,
                          "window": window}, "recalibration.json")
            log_bundle(bundle_dir)
            run_id = run.run_id
    version = register_version(run_id, name, tracking_uri=uri)
    lineage = {
        "lineage.kind": "recalibration", "lineage.parent_version": parent,
        ROOT_TAG: parent_tags.get(ROOT_TAG, parent),
        "lineage.parent_temperature": f"{parent_temperature:.6g}",
        "lineage.window_start": window[0], "lineage.window_end": window[1],
        "lineage.read_window_start": read_window[0], "lineage.read_window_end": read_window[1],
        "lineage.labels": str(len(labels)), "lineage.positives": str(int(y.sum())),
        "lineage.kept": str(kept),
        "lineage.negatives": str(int(y.size - y.sum())),
        "lineage.devices": json.dumps(devices, sort_keys=True),
        "lineage.skipped": json.dumps(sample.skipped, sort_keys=True),
        "lineage.incomplete_runs": str(sample.incomplete_runs),
    }
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, key, value)
    LOGGER.info("Registered %s version %s: recalibrated from version %s on %d labels "
                "(T %.4g -> %.4g).", name, version, parent, len(labels), parent_temperature,
                bundle.temperature)
    return Recalibration(name, version, parent, bundle.temperature, parent_temperature,
                         len(labels), int(y.sum()), devices, kept, window, read_window,
                         sample.skipped, sample.incomplete_runs, run_id)
