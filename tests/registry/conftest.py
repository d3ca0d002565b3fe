"""Registry fixtures: a real SQLite-backed MLflow in a temp dir, tiny bundles, manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GRID = (16, 16, 8)
TINY_NET = {"name": "cnn-small", "options": {"channels": [4, 8], "strides": [2, 2]}}


@pytest.fixture(scope="module")
def _shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Creating an MLflow SQLite store runs its migrations (~3-6 s here): one per module.
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def mlflow_uri(_shared_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``MLFLOW_TRACKING_URI`` = a SQLite file shared by this module's tests (artifacts
    beside it); the working directory is the test's tmp_path so nothing lands in the repo."""
    uri = f"sqlite:///{_shared_store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def make_bundle() -> Callable:
    """Factory: ``make_bundle(seed=0, **fields)`` -> a `ModelBundle` of a ~2.5k-parameter
    cnn-small on a 16x16x8 grid, with seeded weights."""
    import torch

    from triage.model import create_model
    from triage.registry.bundle import ModelBundle
    from triage.train.config import ModelConfig

    def make(seed: int = 0, **fields):
        torch.manual_seed(seed)
        net = create_model(ModelConfig(**TINY_NET), GRID)
        values = dict(
            model_config=TINY_NET, state_dict=net.state_dict(), in_shape=GRID,
            preprocess_config={"target_shape": list(GRID), "orientation": "RAS"},
            ingest_config={"selection": {"prefer": "thin"}},
            train_config={"model": TINY_NET, "runtime": {"seed": seed}},
            appearances={"acme": {"noise": 0.02, "landmarks": [0.1, 0.5, 0.9]}},
            device_stats={"acme": {"mean": 0.41, "std": 0.12, "n": 12}},
            train_devices=["acme", "borealis"],
            metrics={"auroc": 0.75, "ece": 0.05},
        )
        values.update(fields)
        return ModelBundle(**values)

    return make


@pytest.fixture
def volumes() -> np.ndarray:
    """Three seeded float32 volumes (3, 1, 16, 16, 8)."""
    return np.random.default_rng(7).random((3, 1, *GRID), dtype=np.float32)


def fake_manifest(n: int = 12, *, key_prefix: str = "PK", extras: bool = False) -> pd.DataFrame:
    """A valid manifest of `n` studies over two devices and four splits."""
    splits = ["train", "train", "val", "calib", "test", "train"]
    rows = []
    for i in range(n):
        row = {"study_uid": f"1.2.826.0.1.3680043.10.7{i:04d}",
               "patient_key": f"{key_prefix}{i:05d}", "label": i % 2,
               "device_group": ("acme", "borealis")[i % 3 == 0],
               "split": splits[i % len(splits)],
               "series_uid": f"1.2.826.0.1.3680043.10.7{i:04d}.1",
               "export_path": f"/exports/site-a/{key_prefix}{i:05d}/study{i}"}
        if extras:
            row["meta_patient_name"] = f"Zyxwvut^Qqqmore{i:03d}"
            row["meta_accession"] = f"ACCX9{i:06d}"
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def make_manifest(tmp_path: Path) -> Callable:
    """Factory: ``make_manifest(n=12, extras=False, key_prefix="PK")`` writes a validated
    manifest CSV; returns ``(DataFrame as read back, path)``."""
    from triage.data.manifest import read_manifest, write_manifest

    def make(n: int = 12, *, extras: bool = False, key_prefix: str = "PK",
             name: str = "manifest.csv"):
        path = write_manifest(fake_manifest(n, key_prefix=key_prefix, extras=extras),
                              tmp_path / name)
        return read_manifest(path), path

    return make
