"""The tiny trained model: the pipeline's tests and the PACS benchmark run it to exercise
everything around a model (ingest, routing, the registry, the PACS paths), not its accuracy.

A real but minimal model: a 14-study, two-device synthetic export, ingested on a 16x16x8
grid and trained for one epoch of cnn-small (about 15 s on 2 CPU cores).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triage.train.run import TrainOutcome

INGEST: dict[str, Any] = {
    "selection": {"min_slices": 4},
    "preprocess": {"target_spacing": [12, 12, 12], "target_shape": [16, 16, 8]}}
TRAIN: dict[str, Any] = {
    "model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
    "optim": {"epochs": 1, "batch_size": 4, "lr": 0.003},
    "perturb": {"p_transfer": 0.5}}
DEVICES = "acme,borealis"
EXPORT: dict[str, Any] = {"slices": 8, "matrix": 32, "devices": DEVICES,
                          "thick_fraction": 0.0, "extras": False}


def train_tiny(root: Path, *, experiment: str, tracking_uri: str,
               train: dict[str, Any] | None = None, rules_path: Path | None = None,
               ) -> tuple[TrainOutcome, Path]:
    """Synthesize the 14-study export under `root`, ingest it and train the tiny model.

    Args:
        root: an empty folder: ``export/``, ``ingest/`` and ``train/`` are made in it.
        experiment: the MLflow experiment.
        tracking_uri: the MLflow store.
        train: the train config, ``TRAIN`` by default.
        rules_path: routing rules to fit the thresholds with (the default rules if None).

    Returns:
        The `triage.train.run.TrainOutcome`, and the export's manifest path.
    """
    from triage.data.synth import SynthConfig, generate_export
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig
    from triage.train.config import TrainConfig
    from triage.train.run import train_model

    export = generate_export(root / "export", SynthConfig(studies=14, seed=4, **EXPORT))
    ingest_dir = root / "ingest"
    ingest_export(export.out_dir, ingest_dir, IngestConfig.from_dict(INGEST), workers=1)
    # what `triage train` records as the bundle's ingest config (selection, load)
    (ingest_dir / "ingest_config.json").write_text(json.dumps(INGEST), encoding="utf-8")
    config = dict(train or TRAIN, runtime={"experiment": experiment})
    outcome = train_model(manifest_path=export.manifest_path, ingest_dir=ingest_dir,
                          config=TrainConfig.from_dict(config), out_dir=root / "train",
                          tracking_uri=tracking_uri, progress=False, rules_path=rules_path)
    return outcome, Path(export.manifest_path)
