"""Fixtures shared by the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundle_without_cygnus(tiny_training_set, tmp_path_factory) -> Path:
    """The bundle of a tiny real model (cnn-small, 1 epoch) trained on the tiny training
    set without `cygnus`, the device the benchmarks' pool tests hold out. Read-only."""
    from triage.train.config import TrainConfig
    from triage.train.run import train_model

    root = tmp_path_factory.mktemp("without-cygnus")
    config = TrainConfig.from_dict({
        "model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
        "optim": {"epochs": 1, "batch_size": 4}, "runtime": {"experiment": "test"}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        outcome = train_model(manifest_path=tiny_training_set.manifest_path,
                              ingest_dir=tiny_training_set.ingest_dir, config=config,
                              out_dir=root / "run", holdout_device="cygnus", progress=False,
                              log_model=False)
    return outcome.bundle_dir
