"""One training run end to end: manifest + ingest output → trained, calibrated, tracked bundle.

`train_model` is what ``triage train`` runs, and what the leave-one-device-out protocol
(`triage.train.lodo`) runs once per held-out device:

1. join the manifest to the ingest cache (`resolve_samples`); with a held-out device, its
   studies leave every training split and form the held-out test set;
2. estimate each training device's appearance on the training split and build the
   device-grouped perturbation (`triage.train.perturb`);
3. fit the network (`triage.train.loop.fit`), tracking every epoch in MLflow;
4. fit the temperature on the calibration split (`triage.calibrate.temperature`);
5. score val / in-domain test / held-out test per device group, before and after
   temperature scaling, with figures; save and log the model bundle.

Nothing that identifies a patient reaches MLflow: the manifest is logged as a de-identified
dataset with the file's digest, metrics are aggregates per device group, and per-study
predictions stay in the local output folder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.data.dataset import CACHE_DIR, CachedVolumeDataset, ResolvedSamples, Sample
from triage.errors import ConfigError, TriageError
from triage.train.config import TrainConfig

log = logging.getLogger(__name__)

IN_DOMAIN = "test"
HELD_OUT = "held-out"


@dataclass
class TrainOutcome:
    """What a training run produced.

    Attributes:
        run_id: the MLflow run.
        model_uri: the logged model (``models:/<id>``), loadable by `load_bundle_from_uri`.
        bundle_dir: the local model bundle.
        out_dir: the run's local output folder (checkpoint, predictions, figures).
        temperature: the fitted calibration temperature (1.0 without a calibration split).
        metrics: one row per (evaluation set, calibration, device group).
        history: per-epoch training log.
        excluded: manifest studies without a usable volume.
        seconds: wall time of the whole run.
    """

    run_id: str
    model_uri: str
    bundle_dir: Path
    out_dir: Path
    temperature: float
    metrics: pd.DataFrame
    history: list[Any] = field(default_factory=list)
    excluded: int = 0
    seconds: float = 0.0

    def metric(self, evaluation: str, name: str, *, group: str = "all",
               calibrated: bool = True) -> float:
        """One figure, e.g. ``outcome.metric("held-out", "auroc")``."""
        rows = self.metrics[(self.metrics["set"] == evaluation)
                            & (self.metrics["group"] == group)
                            & (self.metrics["calibrated"] == calibrated)]
        return float(rows[name].iloc[0]) if len(rows) else float("nan")


def split_samples(resolved: ResolvedSamples, holdout_device: str | None
                  ) -> dict[str, list[Sample]]:
    """Training, validation, calibration, in-domain test and held-out test samples.

    Raises:
        ConfigError: unknown held-out device, or a split left empty that the run needs.
    """
    devices = sorted({s.device_group for s in resolved.samples})
    if holdout_device is not None and holdout_device not in devices:
        from difflib import get_close_matches

        close = get_close_matches(holdout_device, devices, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Held-out device '{holdout_device}' has no usable study in the "
                          f"manifest.{hint} Device groups: {', '.join(devices)}.")
    inside = [s for s in resolved.samples if s.device_group != holdout_device]
    sets = {
        "train": [s for s in inside if s.split == "train"],
        "val": [s for s in inside if s.split == "val"],
        "calib": [s for s in inside if s.split == "calib"],
        IN_DOMAIN: [s for s in inside if s.split == "test"],
        HELD_OUT: [s for s in resolved.samples if s.device_group == holdout_device],
    }
    labels = {s.label for s in sets["train"]}
    if labels != {0, 1}:
        raise ConfigError(f"The training split needs positive and negative studies; it has "
                          f"{len(sets['train'])} studies with labels {sorted(labels)}.")
    return sets


def _preprocess_config(samples: Sequence[Sample], cache_root: Path) -> dict[str, Any]:
    """The preprocessing config all cached volumes were made with (one, or an error)."""
    from triage.preprocess.cache import VolumeCache

    cache = VolumeCache(cache_root)
    configs: dict[str, dict[str, Any]] = {}
    for sample in samples:
        meta = cache.read_sidecar(sample.cache_key) or {}
        if "config_fingerprint" in meta:
            configs.setdefault(meta["config_fingerprint"], meta["config"])
    if len(configs) != 1:
        raise TriageError(f"The cached volumes were made with {len(configs)} different "
                          f"preprocessing configs ({', '.join(configs) or 'none readable'}); "
                          f"re-run `triage ingest` with one config into a fresh folder.")
    return next(iter(configs.values()))


def _ingest_config(ingest_dir: Path, preprocess: dict[str, Any]) -> dict[str, Any]:
    """The ingest config recorded by ``triage ingest`` (or the default with `preprocess`)."""
    from triage.ingest.config import IngestConfig

    recorded = ingest_dir / "ingest_config.json"
    if recorded.is_file():
        data = json.loads(recorded.read_text(encoding="utf-8"))
    else:
        data = IngestConfig().to_dict()
    data["preprocess"] = preprocess
    return json.loads(json.dumps(data))


def _train_device_stats(samples: Sequence[Sample], cache_root: Path) -> dict[str, Any]:
    """Ingest's HU statistics merged over the training studies, per device group."""
    from triage.ingest.study import STATS_DIR
    from triage.preprocess.stats import DeviceStatsAccumulator

    merged = DeviceStatsAccumulator()
    for sample in samples:
        path = cache_root / STATS_DIR / f"{sample.cache_key}.json"
        if path.is_file():
            merged.merge(DeviceStatsAccumulator.from_dict(json.loads(path.read_text())))
    return merged.to_dict()


def _scores(model: Any, dataset: CachedVolumeDataset, config: TrainConfig, device: Any
            ) -> np.ndarray:
    from triage.train.loop import predict_logits

    return predict_logits(model.to(device), dataset, device=device,
                          batch_size=config.optim.batch_size)


def evaluate_sets(logits: dict[str, np.ndarray], samples: dict[str, list[Sample]],
                  temperature: float, config: TrainConfig) -> pd.DataFrame:
    """Metrics per evaluation set and device group, before and after temperature scaling."""
    from triage.calibrate import grouped_report, probabilities

    frames = []
    for name, values in logits.items():
        if not len(values):
            continue
        labels = np.array([s.label for s in samples[name]])
        groups = [s.device_group for s in samples[name]]
        for calibrated, temp in ((False, 1.0), (True, temperature)):
            frame = grouped_report(probabilities(values, temp), labels, groups,
                                   threshold=config.eval.threshold, n_bins=config.eval.ece_bins)
            frame.insert(0, "calibrated", calibrated)
            frame.insert(0, "set", name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _metric_dict(metrics: pd.DataFrame) -> dict[str, float]:
    """``<set>[.cal].<group>.<metric>`` → value, for MLflow (finite values only)."""
    out: dict[str, float] = {}
    for row in metrics.to_dict("records"):
        prefix = f"{row['set']}{'.cal' if row['calibrated'] else ''}.{row['group']}"
        for key, value in row.items():
            if key in ("set", "calibrated", "group"):
                continue
            if isinstance(value, int | float) and np.isfinite(value):
                out[f"{prefix}.{key}"] = float(value)
    return out


def train_model(*, manifest_path: Path | str, ingest_dir: Path | str, config: TrainConfig,
                out_dir: Path | str, holdout_device: str | None = None,
                run_name: str | None = None, tracking_uri: str | None = None,
                progress: bool = True, log_model: bool = True,
                rules_path: Path | str | None = None) -> TrainOutcome:
    """Train, calibrate, evaluate and log one model. See the module docstring.

    Raises:
        ManifestError: the manifest is invalid.
        DatasetError: the manifest and the ingest output do not fit together.
        ConfigError: a bad config value or held-out device.
    """
    from triage.calibrate import fit_temperature, plots
    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest
    from triage.model import create_model
    from triage.model.device import select_device
    from triage.registry.bundle import ModelBundle, save_bundle
    from triage.registry.pyfunc import log_bundle
    from triage.registry.tracking import start_run
    from triage.train.appearance import estimate_appearances
    from triage.train.augment import Augmentation, compose
    from triage.train.finetune import load_init
    from triage.train.layered import LayeredAugmentation
    from triage.train.loop import fit
    from triage.train.perturb import DevicePerturbation

    started = time.perf_counter()
    ruleset, rules = _load_rules(rules_path)  # a bad rules file: before any work
    manifest_path, ingest_dir, out_dir = Path(manifest_path), Path(ingest_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_root = ingest_dir / CACHE_DIR
    manifest = read_manifest(manifest_path)
    resolved = resolve_samples(manifest, ingest_dir)
    sets = split_samples(resolved, holdout_device)
    train_devices = sorted({s.device_group for s in sets["train"]})
    preprocess = _preprocess_config(resolved.samples, cache_root)
    in_shape = tuple(int(v) for v in preprocess["target_shape"])
    seed = config.runtime.seed

    def dataset(name: str, **kwargs: Any) -> CachedVolumeDataset:
        return CachedVolumeDataset(sets[name], cache_root, devices=train_devices,
                                   preload=config.runtime.preload, seed=seed, **kwargs)

    train_ds = dataset("train")
    appearances = estimate_appearances({
        device: [train_ds.array(i) for i, s in enumerate(sets["train"])
                 if s.device_group == device] for device in train_devices})
    perturbation = DevicePerturbation(config.perturb, appearances)
    layered = LayeredAugmentation(config.layered)
    # Device perturbation first (it maps intensity landmarks), then generic augmentation,
    # then the layered tiers.
    train_ds.transform = compose(perturbation if config.perturb.enabled else None,
                                 Augmentation(config.augment) if config.augment.enabled
                                 else None,
                                 layered if config.layered.enabled else None)
    if config.consistency.weight > 0:
        if train_ds.transform is None:
            raise ConfigError("consistency.weight > 0 compares two views of a sample, but "
                              "no training transform is on; enable perturb, augment or "
                              "layered.")
        train_ds.return_clean = config.consistency.views == "clean"
        train_ds.second_view = config.consistency.views == "augmented"
    val_ds = dataset("val") if sets["val"] else None
    class_counts = np.bincount(train_ds.labels(), minlength=2).tolist()

    tags = {"triage.stage": "train", "triage.config_fingerprint": config.fingerprint(),
            "triage.holdout_device": holdout_device or "",
            "triage.train_devices": ",".join(train_devices)}
    with start_run(config.runtime.experiment, run_name=run_name, tags=tags,
                   uri=tracking_uri) as run:
        run.log_params(config.flat())
        run.log_params(perturbation.describe())  # keys start with "perturbation."
        run.log_params(layered.describe())  # keys start with "augmentation."
        run.log_params({"data.preprocess_fingerprint": _fingerprint(preprocess),
                        "data.in_shape": "x".join(map(str, in_shape)),
                        "data.excluded_studies": len(resolved.excluded),
                        **{f"data.n_{name}": len(items) for name, items in sets.items()}})
        run.log_manifest(manifest, source_path=manifest_path)

        def on_epoch(entry: Any) -> None:
            metrics = {"train.loss": entry.train_loss, "lr": entry.lr,
                       "epoch_seconds": entry.seconds}
            if entry.train_consistency:
                metrics["train.consistency"] = entry.train_consistency
            metrics |= {f"val.{k}": v for k, v in entry.val.items()}
            metrics |= {f"rendered_as.{k}": v for k, v in entry.rendered.items()}
            metrics |= {f"train.term.{k}": v for k, v in entry.terms.items()}
            metrics |= {f"augment.{k}": v for k, v in entry.augment.items()}
            metrics |= {f"model.{k}": v for k, v in entry.model.items()}
            metrics["train.frozen_modules"] = len(entry.frozen)
            run.log_metrics(metrics, step=entry.epoch)

        model = create_model(config.model, in_shape, seed=config.runtime.seed)
        if config.finetune.init:
            run.log_params(load_init(model, config.finetune.init,
                                     model_config={"name": config.model.name,
                                                   "options": dict(config.model.options)},
                                     in_shape=in_shape))
        teacher = None
        if config.distill.teacher:
            from triage.train.distill import load_teacher

            teacher = load_teacher(config.distill.teacher, in_shape)
            run.set_tags({"triage.teacher": config.distill.teacher})
        result = fit(model, train_ds, val_ds, config, out_dir / "train",
                     class_counts=class_counts, on_epoch=on_epoch, progress=progress,
                     teacher=teacher)
        if result.resumed_from:
            # The epochs a killed run trained come from the checkpoint: log them here too,
            # so that this run's curves are whole (the killed run's MLflow run may have
            # stopped before logging its last epoch).
            for entry in result.history[:result.resumed_from]:
                on_epoch(entry)
            run.set_tags({"triage.resumed_from_epoch": result.resumed_from})

        bundle = ModelBundle(
            model_config={"name": config.model.name, "options": dict(config.model.options)},
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            in_shape=in_shape, preprocess_config=preprocess,
            ingest_config=_ingest_config(ingest_dir, preprocess),
            train_config=config.to_dict(),
            appearances={k: v.to_dict() for k, v in appearances.items()},
            device_stats=_train_device_stats(sets["train"], cache_root),
            train_devices=train_devices)
        device = select_device(config.runtime.device)
        logits = {name: _scores(model, dataset(name), config, device)
                  if sets[name] else np.zeros((0, 2)) for name in sets if name != "train"}
        temperature = 1.0
        if len(logits["calib"]) and len({s.label for s in sets["calib"]}) == 2:
            temperature = fit_temperature(logits["calib"],
                                          np.array([s.label for s in sets["calib"]]))
        else:
            log.warning("No calibration split with both classes: temperature left at 1.0.")
        bundle = bundle.with_temperature(temperature)
        bundle, rules_version = _fit_routing(bundle, logits["calib"], sets["calib"],
                                             temperature, ruleset, rules)
        run.set_tags({"triage.rules_version": rules_version})
        metrics = evaluate_sets(logits, sets, temperature, config)
        bundle.metrics.update(_metric_dict(metrics[metrics["group"] == "all"]))
        run.log_metrics({"calibration.temperature": temperature})
        run.log_metrics(_metric_dict(metrics))
        run.log_table(metrics, "metrics/per_device.csv")
        _log_figures(run, plots, logits, sets, temperature, config, out_dir / "figures")

        bundle_dir = save_bundle(bundle, out_dir / "bundle")
        model_uri = log_bundle(bundle_dir, name="model") if log_model else ""
        _save_predictions(logits, sets, temperature, out_dir / "predictions.csv")
        metrics.to_csv(out_dir / "metrics.csv", index=False)
        run_id = run.run_id
    return TrainOutcome(run_id=run_id, model_uri=model_uri, bundle_dir=bundle_dir,
                        out_dir=out_dir, temperature=temperature, metrics=metrics,
                        history=result.history, excluded=len(resolved.excluded),
                        seconds=time.perf_counter() - started)


def _load_rules(rules_path: Path | str | None) -> tuple[Any, dict[str, Any]]:
    """The rules file (default: the shipped rules) validated, and its parsed YAML, which the
    bundle records.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or is not a valid rules file.
    """
    from triage.route.rules import DEFAULT_RULES, RuleSet
    from triage.settings import load_yaml

    path = Path(rules_path) if rules_path is not None else DEFAULT_RULES
    data = load_yaml(path, "rules file")
    return RuleSet.from_dict(data, source=str(path)), data


def _fit_routing(bundle: Any, calib_logits: np.ndarray, calib: list[Sample],
                 temperature: float, ruleset: Any, rules: dict[str, Any]) -> tuple[Any, str]:
    """Certify per-device routing thresholds on the calibration split (docs/calibration.md)
    under the rules file's settings; the bundle keeps the thresholds and the rules (`rules`,
    the file's parsed YAML, from `_load_rules`)."""
    import dataclasses

    from triage.calibrate import probabilities
    from triage.monitor.reference import score_reference
    from triage.route import fit_thresholds

    p = probabilities(calib_logits, temperature) if len(calib_logits) else np.zeros(0)
    fitted = fit_thresholds(p, np.array([s.label for s in calib], dtype=int),
                            [s.device_group for s in calib], ruleset.thresholds)
    reference = score_reference(p, [s.device_group for s in calib])
    bundle = dataclasses.replace(bundle, routing=fitted.to_dict(), rules=rules,
                                 score_reference=reference)
    return bundle, ruleset.full_version


def _fingerprint(preprocess: dict[str, Any]) -> str:
    from triage.preprocess.config import PreprocessConfig

    return PreprocessConfig.from_dict(preprocess).fingerprint()


def _log_figures(run: Any, plots: Any, logits: dict[str, np.ndarray],
                 sets: dict[str, list[Sample]], temperature: float, config: TrainConfig,
                 folder: Path) -> None:
    """Reliability diagram, confusion matrix and per-device bars per evaluation set."""
    from triage.calibrate import grouped_report, probabilities

    folder.mkdir(parents=True, exist_ok=True)
    for name in (IN_DOMAIN, HELD_OUT, "calib"):
        values = logits.get(name)
        if values is None or not len(values):
            continue
        labels = np.array([s.label for s in sets[name]])
        groups = [s.device_group for s in sets[name]]
        p_raw, p_cal = probabilities(values, 1.0), probabilities(values, temperature)
        predicted = (p_cal >= config.eval.threshold).astype(int)
        frame = grouped_report(p_cal, labels, groups, threshold=config.eval.threshold,
                               n_bins=config.eval.ece_bins)
        for path in (
            plots.reliability_diagram(p_cal, labels, folder / f"{name}_reliability.png",
                                      n_bins=config.eval.ece_bins, before=p_raw,
                                      title=f"{name}: reliability (T = {temperature:.2f})"),
            plots.confusion_matrix_figure(labels, predicted, folder / f"{name}_confusion.png",
                                          title=f"{name}: confusion matrix"),
            plots.per_group_bars(frame, "auroc", folder / f"{name}_auroc_per_device.png",
                                 title=f"{name}: AUROC per device group"),
            plots.per_group_bars(frame, "ece", folder / f"{name}_ece_per_device.png",
                                 title=f"{name}: ECE per device group"),
        ):
            run.log_figure(path)


def _save_predictions(logits: dict[str, np.ndarray], sets: dict[str, list[Sample]],
                      temperature: float, path: Path) -> None:
    """Per-study predictions, kept locally only (they are keyed by study UID)."""
    from triage.calibrate import probabilities
    from triage.io import atomic_open

    rows = []
    for name, values in logits.items():
        if not len(values):
            continue
        p_raw, p_cal = probabilities(values, 1.0), probabilities(values, temperature)
        for sample, raw, cal in zip(sets[name], p_raw, p_cal, strict=True):
            rows.append({"set": name, "study_uid": sample.study_uid,
                         "device_group": sample.device_group, "label": sample.label,
                         "p_raw": round(float(raw), 6), "p_calibrated": round(float(cal), 6)})
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)
