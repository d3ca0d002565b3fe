"""Score the quality benchmark's models on a large, independent test export (the pool).

The harness's own test sets are small: the in-domain test split holds ~50 studies and the
held-out device ~100, so one study moves accuracy by 2 points and an AUROC's standard
error is 0.01-0.02, as coarse as the 3- and 5-point targets themselves. Every trained
model therefore also scores a second export made by the same generator at the same
difficulty (the harness's ``--synth-args``) with another seed: 400 studies each of
``acme``, ``borealis`` and ``cygnus``, none of them seen in training, validation or
calibration. **In-domain** = its studies of the devices the model was trained on,
**held-out** = those of the device it was trained without. The pool is generated and
ingested once (`benchmarks.triage.data.prepare_pool`, cached by its arguments); scores
are cached per model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

POOL_DEVICES = ("acme", "borealis", "cygnus")
POOL_STUDIES = 1200
POOL_SEED = 1
METRICS = ("accuracy", "macro_f1", "auroc", "nll", "brier", "ece")


def prepare(synth_args: str, matrix: int, workers: int = 2) -> dict[str, Any]:
    """The pool's manifest and ingest folder (generated and ingested on first use), at
    the difficulty of the training export (`synth_args`, `matrix`)."""
    from benchmarks.triage.data import prepare_pool

    return prepare_pool(list(POOL_DEVICES), POOL_STUDIES, POOL_SEED, matrix=matrix,
                        synth_args=synth_args, workers=workers)


def pool_rows(bundle_dir: Path, holdout: str, pool: dict[str, Any]) -> dict[str, dict] | None:
    """In-domain and held-out figures of one model on the pool, like `lodo_row`'s.

    Args:
        bundle_dir: the run's model bundle (its ``train_devices`` define in-domain; its
            temperature, fitted on the run's own calibration split, gives the ``True`` row).
        holdout: the device group the run held out.
        pool: `prepare`'s result.

    Returns:
        ``{"False": row, "True": row}`` (uncalibrated, temperature-scaled), each with
        ``in_domain_<metric>``, ``held_out_<metric>``, ``auroc_gap``, ``accuracy_gap`` and
        the set sizes; None when the pool holds no study of `holdout` or of a training
        device.
    """
    from benchmarks.triage.data import score_pool
    from triage.calibrate import binary_report, probabilities

    meta = json.loads((bundle_dir / "bundle.json").read_text())
    frame, _ = score_pool(bundle_dir, pool["manifest"], pool["ingest"])
    groups = frame["device_group"].astype(str)
    held, in_domain = (groups == holdout).to_numpy(), groups.isin(meta["train_devices"]).to_numpy()
    if not held.any() or not in_domain.any():
        return None
    logits = frame[["z0", "z1"]].to_numpy(np.float64)
    labels = frame["label"].astype(int).to_numpy()
    rows = {}
    for calibrated in (False, True):
        temperature = float(meta["temperature"]) if calibrated else 1.0
        p = probabilities(logits, temperature)
        row: dict[str, Any] = {"held_out_device": holdout, "calibrated": calibrated,
                               "temperature": temperature, "n_in_domain": int(in_domain.sum()),
                               "n_held_out": int(held.sum())}
        for name, mask in (("in_domain", in_domain), ("held_out", held)):
            report = binary_report(p[mask], labels[mask])
            row.update({f"{name}_{key}": report[key] for key in METRICS})
        row["auroc_gap"] = row["in_domain_auroc"] - row["held_out_auroc"]
        row["accuracy_gap"] = row["in_domain_accuracy"] - row["held_out_accuracy"]
        rows[str(calibrated)] = row
    return rows
