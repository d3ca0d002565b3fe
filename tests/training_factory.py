"""A small, seeded "ingested" training set: cached volumes, an ingest report and a manifest.

Tests of training, calibration and the registry need cached volumes with labels and device
groups but not the DICOM path: this writes them straight into a real `VolumeCache`, with a
real `ingest_report.csv` (`triage.ingest.report.write_report`) and a validated manifest
(`triage.data.manifest.write_manifest`), exactly the files `resolve_samples` joins.

Each volume is a smooth ellipsoid "body" (soft tissue ~0.5 in CT-window units) on air (0);
positives carry one dark spherical "lesion". Device groups differ the way scanners do: an
intensity offset, a noise level and a blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from triage.data.manifest import write_manifest
from triage.ingest.report import IngestStatus, StudyReport, write_report
from triage.preprocess.cache import VolumeCache
from triage.preprocess.config import PreprocessConfig
from triage.preprocess.pipeline import PreparedVolume

# (offset in [0, 1] window units, noise sd, blur sigma in voxels) per device group.
DEVICE_LOOKS = {
    "acme": (0.00, 0.02, 0.0),
    "borealis": (0.02, 0.03, 0.6),
    "cygnus": (0.07, 0.06, 0.0),
    "ember": (-0.03, 0.025, 1.0),
}
SPLITS = ("train", "train", "train", "val", "calib", "test")


@dataclass(frozen=True)
class TrainingSet:
    """Where the factory wrote things, and the manifest it wrote."""

    ingest_dir: Path
    manifest_path: Path
    manifest: pd.DataFrame
    shape: tuple[int, int, int]


def phantom(shape: tuple[int, int, int], label: int, device: str,
            rng: np.random.Generator, lesion_contrast: float = 0.25) -> np.ndarray:
    """One normalized CT-like volume of `device`'s look; a lesion when `label` is 1."""
    offset, noise, blur = DEVICE_LOOKS[device]
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radii = np.array([0.8, 0.7, 0.9]) * rng.uniform(0.9, 1.05, 3)
    body = (((grid / radii[:, None, None, None]) ** 2).sum(0) <= 1.0)
    array = np.where(body, 0.5, 0.0).astype(np.float32)
    if label:
        center = rng.uniform(-0.35, 0.35, 3)
        radius = rng.uniform(0.18, 0.28)
        lesion = ((grid - center[:, None, None, None]) ** 2).sum(0) <= radius ** 2
        array[lesion & body] -= lesion_contrast
    if blur:
        array = ndimage.gaussian_filter(array, blur)
    array = array + np.where(body, offset, 0.0) + rng.normal(0, noise, shape)
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def make_training_set(root: Path, *, per_cell: int = 6, shape: tuple[int, int, int] = (24, 24, 12),
                      devices: tuple[str, ...] = tuple(DEVICE_LOOKS), seed: int = 0,
                      failed: int = 1) -> TrainingSet:
    """Write ``per_cell`` studies per (device, label) cell, plus `failed` failed studies.

    Splits cycle train/train/train/val/calib/test within each cell, one patient per study.
    The failed studies are in the manifest and the report (status failed, no cache key),
    as a study whose series ingest refused would be.
    """
    rng = np.random.default_rng(seed)
    ingest_dir = root / "ingest"
    cache = VolumeCache(ingest_dir / "cache")
    config = PreprocessConfig(target_shape=shape)
    affine = np.diag([4.0, 4.0, 5.0, 1.0])
    rows, reports = [], []
    n = 0
    for device in devices:
        for label in (0, 1):
            for k in range(per_cell):
                n += 1
                uid = f"1.2.826.0.1.3680043.10.1{n:04d}"
                prepared = PreparedVolume(
                    array=phantom(shape, label, device, rng), affine=affine, modality="CT",
                    provenance={"study_uid": uid, "device_group": device})
                key = cache.put(prepared, source_fingerprint=f"factory-{seed}-{n}",
                                config=config)
                reports.append(StudyReport(study_uid=uid, status=IngestStatus.OK,
                                           series_uid=uid + ".1", modality="CT",
                                           device_group=device, n_series=1, n_files=shape[2],
                                           n_slices=shape[2], verdict="ok", cache_key=key))
                rows.append({"study_uid": uid, "patient_key": f"PK{seed:02d}{n:05d}",
                             "label": label, "device_group": device,
                             "split": SPLITS[k % len(SPLITS)]})
    for j in range(failed):
        uid = f"1.2.826.0.1.3680043.10.9{j:04d}"
        reports.append(StudyReport(study_uid=uid, status=IngestStatus.FAILED, stage="load",
                                   reasons="gaps: 2 slices missing"))
        rows.append({"study_uid": uid, "patient_key": f"PKF{seed:02d}{j:04d}", "label": 1,
                     "device_group": devices[0], "split": "train"})
    write_report(reports, ingest_dir / "ingest_report.csv")
    manifest = pd.DataFrame(rows)
    manifest_path = write_manifest(manifest, root / "manifest.csv")
    return TrainingSet(ingest_dir, manifest_path, manifest.astype(str), shape)
