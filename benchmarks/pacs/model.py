"""The benchmark's tiny model and studies, made once and cached under ``bench_output/pacs``.

The model is the one the PACS tests use (a cnn-small trained one epoch on a 14-study,
two-device synthetic export, volumes on a 16x16x8 grid): the benchmark measures the PACS
paths around the model, not its forward pass. The factory is copied here, not imported from
``tests/``.
"""

from __future__ import annotations

import json
from pathlib import Path

INGEST = {"selection": {"min_slices": 4},
          "preprocess": {"target_spacing": [12, 12, 12], "target_shape": [16, 16, 8]}}
TRAIN = {"model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
         "optim": {"epochs": 1, "batch_size": 4, "lr": 0.003},
         "perturb": {"p_transfer": 0.5}, "runtime": {"experiment": "bench-pacs"}}
DEVICES = "acme,borealis"
SLICES, MATRIX = 16, 64  # 16 slices: the default rules' slice QC passes


def tiny_model(root: Path) -> Path:
    """The bundle folder of the tiny model (trained on first use, about 15 s)."""
    from triage.data.synth import SynthConfig, generate_export
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig
    from triage.train.config import TrainConfig
    from triage.train.run import train_model

    done = root / "bundle.txt"
    if done.is_file() and Path(done.read_text(encoding="utf-8")).is_dir():
        return Path(done.read_text(encoding="utf-8"))
    export = generate_export(root / "export", SynthConfig(
        studies=14, seed=4, slices=8, matrix=32, devices=DEVICES, thick_fraction=0.0,
        extras=False))
    ingest_dir = root / "ingest"
    ingest_export(export.out_dir, ingest_dir, IngestConfig.from_dict(INGEST), workers=1)
    (ingest_dir / "ingest_config.json").write_text(json.dumps(INGEST), encoding="utf-8")
    outcome = train_model(manifest_path=export.manifest_path, ingest_dir=ingest_dir,
                          config=TrainConfig.from_dict(TRAIN), out_dir=root / "train",
                          tracking_uri=f"sqlite:///{root / 'mlflow.db'}", progress=False)
    done.write_text(str(outcome.bundle_dir), encoding="utf-8")
    return Path(outcome.bundle_dir)


def studies(root: Path, count: int, seed: int = 700) -> Path:
    """A synthetic export of `count` CT studies (no extras), cached by size and seed."""
    from triage.data.synth import SynthConfig, generate_export

    out = root / f"export-{count}-{seed}"
    if (out / ".done").is_file():
        return out / "export"
    summary = generate_export(out / "export", SynthConfig(
        studies=count, seed=seed, slices=SLICES, matrix=MATRIX, devices=DEVICES,
        thick_fraction=0.0, extras=False))
    (out / ".done").write_text("", encoding="utf-8")
    return Path(summary.out_dir)
