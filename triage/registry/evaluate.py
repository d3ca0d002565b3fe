"""Scoring a trained model bundle on a manifest, per device group (``triage evaluate``).

The same metric code (`triage.calibrate.grouped_report`) scores a training run's own
evaluation sets, the leave-one-device-out protocol and promotion, so every table in the
project is computed one way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.data.dataset import CACHE_DIR, CachedVolumeDataset, Sample
from triage.errors import ConfigError

# The columns a summary table shows, in order (all of METRIC_KEYS stay in the CSVs).
TABLE_METRICS = ("n", "prevalence", "accuracy", "macro_f1", "auroc", "sensitivity",
                 "specificity", "nll", "brier", "ece")


def evaluate_bundle(bundle: Any, samples: Sequence[Sample], ingest_dir: Path | str, *,
                    threshold: float = 0.5, n_bins: int = 15, device: str = "auto",
                    batch_size: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-device metrics of `bundle` (calibrated with its temperature) on `samples`.

    Returns:
        (metrics, predictions): one row per device group plus "all"; one row per study
        with the raw and calibrated positive-class probability.

    Raises:
        ConfigError: no samples to score.
    """
    from triage.calibrate import grouped_report, probabilities

    if not samples:
        raise ConfigError("There are no studies to evaluate: check the manifest's splits "
                          "and that the export was ingested.")
    _check_preprocessing(bundle, samples, Path(ingest_dir))
    dataset = CachedVolumeDataset(samples, Path(ingest_dir) / CACHE_DIR, preload=False)
    arrays = (dataset.array(i) for i in range(len(dataset)))
    logits = _batched_logits(bundle, arrays, len(dataset), device=device,
                             batch_size=batch_size)
    labels = dataset.labels()
    groups = dataset.device_groups()
    p_raw = probabilities(logits, 1.0)
    p_cal = probabilities(logits, bundle.temperature)
    frames = []
    for calibrated, p in ((False, p_raw), (True, p_cal)):
        frame = grouped_report(p, labels, groups, threshold=threshold, n_bins=n_bins)
        frame.insert(0, "calibrated", calibrated)
        frames.append(frame)
    predictions = pd.DataFrame({
        "study_uid": [s.study_uid for s in samples], "device_group": groups,
        "split": [s.split for s in samples], "label": labels,
        "p_raw": np.round(p_raw, 6), "p_calibrated": np.round(p_cal, 6)})
    return pd.concat(frames, ignore_index=True), predictions


def _check_preprocessing(bundle: Any, samples: Sequence[Sample], ingest_dir: Path) -> None:
    """Refuse volumes made with another preprocessing than the model's (another shape or
    spacing would score wrong, or not at all)."""
    from triage.preprocess.cache import VolumeCache
    from triage.preprocess.config import PreprocessConfig

    expected = PreprocessConfig.from_dict(bundle.preprocess_config,
                                          source="the model's preprocess_config")
    cache = VolumeCache(ingest_dir / CACHE_DIR)
    for sample in samples:
        meta = cache.read_sidecar(sample.cache_key) or {}
        found = meta.get("config_fingerprint")
        if found is not None and found != expected.fingerprint():
            shape = (meta.get("config") or {}).get("target_shape")
            raise ConfigError(
                f"The volumes in {ingest_dir} were made with another preprocessing than the "
                f"model's (target_shape {shape} vs {list(expected.target_shape)}, study "
                f"{sample.study_uid}); ingest the export again with the model's ingest "
                f"config into a fresh folder, or evaluate a model trained on this ingest.")


def _batched_logits(bundle: Any, arrays: Any, total: int, *, device: str, batch_size: int
                    ) -> np.ndarray:
    out = []
    batch: list[np.ndarray] = []
    for array in arrays:
        batch.append(array)
        if len(batch) == batch_size:
            out.append(bundle.predict_logits(np.stack(batch), device=device,
                                             batch_size=batch_size))
            batch = []
    if batch:
        out.append(bundle.predict_logits(np.stack(batch), device=device,
                                         batch_size=batch_size))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str], *, digits: int = 3) -> str:
    """`frame[columns]` as a GitHub Markdown table (NaN shown as an en dash)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in frame[list(columns)].itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)
