"""Fixtures for the training tests: datasets over the tiny training set."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_splits(tiny_training_set):
    """``(samples by split, cache root, train device names)`` of the tiny training set."""
    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest

    resolved = resolve_samples(read_manifest(tiny_training_set.manifest_path),
                               tiny_training_set.ingest_dir)
    devices = sorted({s.device_group for s in resolved.samples})
    splits = {name: resolved.split(name) for name in ("train", "val", "calib", "test")}
    return splits, tiny_training_set.ingest_dir / "cache", devices


@pytest.fixture
def make_dataset(tiny_splits):
    """Factory: ``make_dataset("train", transform=..., return_clean=...)``."""
    from triage.data.dataset import CachedVolumeDataset

    splits, cache_root, devices = tiny_splits

    def make(split: str = "train", **kwargs: Any) -> CachedVolumeDataset:
        return CachedVolumeDataset(splits[split], cache_root, devices=devices, seed=3,
                                   **kwargs)

    return make
