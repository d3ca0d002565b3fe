"""Training samples: manifest rows joined to the ingest stage's cached volumes.

`resolve_samples` joins a manifest to an ingest output folder (``ingest_report.csv`` +
``cache/``) on ``study_uid``. A manifest study that ingest did not turn into a trustworthy
volume is not silently dropped: it is returned in `ResolvedSamples.excluded` with the
ingest reason, and the training run records the count.

`CachedVolumeDataset` serves ``{"image": float32 tensor [1, X, Y, Z], "label", "device",
"index"}`` items, optionally through a training-time transform. Randomness is drawn from a
generator seeded by ``(seed, epoch, index)``, so an epoch is reproducible whatever the
number of DataLoader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.errors import TriageError
from triage.ingest.report import REPORT_COLUMNS, read_report
from triage.preprocess.cache import VolumeCache

log = logging.getLogger(__name__)

REPORT_NAME = "ingest_report.csv"
CACHE_DIR = "cache"

# transform(array, sample, rng) -> (array, info); info names what was done (or None).
Transform = Callable[[np.ndarray, "Sample", np.random.Generator], tuple[np.ndarray, Any]]


class DatasetError(TriageError):
    """The manifest and the ingest output do not fit together."""


@dataclass(frozen=True)
class Sample:
    """One trainable study: its label, device group, split and cached volume key."""

    study_uid: str
    patient_key: str
    label: int
    device_group: str
    split: str
    cache_key: str


@dataclass(frozen=True)
class ResolvedSamples:
    """Samples with a cached volume, and the manifest studies left out with the reason."""

    samples: list[Sample]
    excluded: list[tuple[str, str]]

    def split(self, *names: str) -> list[Sample]:
        """The samples whose split is one of `names`."""
        return [s for s in self.samples if s.split in names]


def resolve_samples(manifest: pd.DataFrame, ingest_dir: Path | str) -> ResolvedSamples:
    """Join `manifest` (validated, see `triage.data.manifest`) to ingest's report and cache.

    Raises:
        DatasetError: when the ingest folder has no report, or no manifest study was
            ingested at all (the manifest and the export do not belong together).
    """
    ingest_dir = Path(ingest_dir)
    report_path = ingest_dir / REPORT_NAME
    if not report_path.is_file():
        raise DatasetError(f"{ingest_dir} has no {REPORT_NAME}: run `triage ingest EXPORT "
                           f"--out {ingest_dir}` first.")
    # read_report undoes the quote that keeps a text cell from being a spreadsheet formula
    report = pd.DataFrame(read_report(report_path), columns=REPORT_COLUMNS, dtype=str)
    by_uid = {row.study_uid: row for row in report.itertuples(index=False)}
    samples: list[Sample] = []
    excluded: list[tuple[str, str]] = []
    for row in manifest.itertuples(index=False):
        ingested = by_uid.get(row.study_uid)
        if ingested is None:
            excluded.append((row.study_uid, "not found in the ingested export"))
        elif ingested.status != "ok" or not ingested.cache_key:
            excluded.append((row.study_uid, f"ingest {ingested.status}: {ingested.reasons}"))
        else:
            samples.append(Sample(study_uid=row.study_uid, patient_key=str(row.patient_key),
                                  label=int(row.label), device_group=str(row.device_group),
                                  split=str(row.split), cache_key=ingested.cache_key))
    if not samples:
        raise DatasetError(f"None of the manifest's {len(manifest)} studies has a cached "
                           f"volume in {ingest_dir}: was this export ingested?")
    if excluded:
        log.info("%d of %d manifest studies have no usable volume and are left out.",
                 len(excluded), len(manifest))
    return ResolvedSamples(samples, excluded)


def load_array(cache: VolumeCache, sample: Sample) -> np.ndarray:
    """The cached float32 volume of `sample`.

    Raises:
        DatasetError: the cache entry is missing or damaged (re-run ingest).
    """
    prepared = cache.get(sample.cache_key)
    if prepared is None:
        raise DatasetError(f"Study {sample.study_uid}: cache entry {sample.cache_key} is "
                           f"missing or damaged in {cache.root}; re-run `triage ingest`, "
                           f"which remakes an entry whose volume file is gone or cut short "
                           f"(for other damage, delete {sample.cache_key}.json first).")
    return prepared.array


class CachedVolumeDataset:
    """A torch-style map dataset over `samples` (``len`` and ``[i]``).

    Args:
        samples: the samples to serve, in order.
        cache_root: the ingest cache folder (``<ingest out>/cache``).
        devices: device-group names; ``item["device"]`` is the index in this list
            (-1 for a group not in it).
        transform: optional ``transform(array, sample, rng) -> (array, info)`` applied
            to a copy of the volume (training only).
        return_clean: also return the untransformed volume as ``item["clean"]``.
        second_view: also return a second, independent draw of `transform` as
            ``item["view2"]`` (two augmented views for a consistency term).
        preload: read every volume once and keep it in memory.
        seed: seed of the per-item random generators.
    """

    def __init__(self, samples: Sequence[Sample], cache_root: Path | str, *,
                 devices: Sequence[str] = (), transform: Transform | None = None,
                 return_clean: bool = False, second_view: bool = False, preload: bool = True,
                 seed: int = 0) -> None:
        self.samples = list(samples)
        self.cache = VolumeCache(cache_root)
        self.devices = list(devices)
        self.transform = transform
        self.return_clean = return_clean
        self.second_view = second_view
        self.seed = seed
        self.epoch = 0
        self._arrays: dict[int, np.ndarray] = {}
        if preload:
            for i, sample in enumerate(self.samples):
                self._arrays[i] = load_array(self.cache, sample)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Make the next epoch's random draws depend on `epoch` (call before each epoch)."""
        self.epoch = epoch

    def array(self, index: int) -> np.ndarray:
        """The clean cached volume of sample `index` (not a copy: do not modify)."""
        cached = self._arrays.get(index)
        return cached if cached is not None else load_array(self.cache, self.samples[index])

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def device_groups(self) -> list[str]:
        return [s.device_group for s in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        sample = self.samples[index]
        clean = self.array(index)
        image = clean
        info = None
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, info = self.transform(clean.copy(), sample, rng)
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "label": sample.label,
            "device": self.devices.index(sample.device_group)
            if sample.device_group in self.devices else -1,
            "index": index,
        }
        if self.return_clean:
            item["clean"] = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None]
        operators = getattr(info, "operators", None)
        if self.second_view and self.transform is not None:
            # Its own stream: the first view is the same with or without the second.
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            view, info2 = self.transform(clean.copy(), sample, rng)
            item["view2"] = torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32))[None]
            more = getattr(info2, "operators", None)
            if more is not None:
                operators = more if operators is None else operators + more
        if self.transform is not None:
            item["rendered_as"] = _rendered_index(info, self.devices)
        if operators is not None:
            item["operators"] = torch.as_tensor(np.asarray(operators, dtype=np.int64))
        return item


def _rendered_index(info: Any, devices: list[str]) -> int:
    """Index of the device whose appearance a sample was re-rendered with, or -1."""
    target = getattr(info, "target_device", None)
    return devices.index(target) if target in devices else -1
