"""Leave-one-device-out: train without one device group, test on it, for each device.

For every held-out device the table holds the in-domain test figures (the other devices'
``test`` split, which the model never trained on) beside the held-out device's figures
(all of its studies: none was seen in training, calibration or model selection), after
temperature scaling fitted on the in-domain calibration split. The gap between the two is
what the device-grouped perturbation is meant to close.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from triage.train.config import TrainConfig
from triage.train.run import HELD_OUT, IN_DOMAIN, TrainOutcome, train_model

log = logging.getLogger(__name__)

LODO_METRICS = ("accuracy", "macro_f1", "auroc", "nll", "brier", "ece")


def lodo_row(device: str, outcome: TrainOutcome, *, calibrated: bool = True) -> dict:
    """One table row: in-domain and held-out metrics of a run that held `device` out."""
    row: dict = {"held_out_device": device, "calibrated": calibrated,
                 "temperature": outcome.temperature, "seconds": round(outcome.seconds, 1),
                 "run_id": outcome.run_id}
    for name in LODO_METRICS:
        row[f"in_domain_{name}"] = outcome.metric(IN_DOMAIN, name, calibrated=calibrated)
        row[f"held_out_{name}"] = outcome.metric(HELD_OUT, name, calibrated=calibrated)
    row["auroc_gap"] = row["in_domain_auroc"] - row["held_out_auroc"]
    row["accuracy_gap"] = row["in_domain_accuracy"] - row["held_out_accuracy"]
    return row


def leave_one_device_out(*, manifest_path: Path | str, ingest_dir: Path | str,
                         config: TrainConfig, out_dir: Path | str,
                         devices: Sequence[str] | None = None, tracking_uri: str | None = None,
                         progress: bool = True) -> pd.DataFrame:
    """Run the protocol over `devices` (default: every device group with a usable study).

    Returns:
        One row per held-out device (see `lodo_row`); also written to
        ``out_dir/lodo.csv``.
    """
    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest

    out_dir = Path(out_dir)
    if devices is None:
        resolved = resolve_samples(read_manifest(manifest_path), ingest_dir)
        devices = sorted({s.device_group for s in resolved.samples})
    rows = []
    for device in devices:
        log.info("Leave-one-device-out: holding out %s.", device)
        outcome = train_model(manifest_path=manifest_path, ingest_dir=ingest_dir,
                              config=config, out_dir=out_dir / device, holdout_device=device,
                              run_name=f"lodo-{device}", tracking_uri=tracking_uri,
                              progress=progress, log_model=False)
        rows.append(lodo_row(device, outcome))
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "lodo.csv", index=False)
    return table
