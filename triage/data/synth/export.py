"""`generate_export`: write a synthetic multi-device PACS export, its manifest and truth.

Each study is a pure function of ``(config, slot)``; studies are rendered and written one
at a time (optionally in worker processes), so memory stays bounded by one study and the
bytes do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydicom import config as pydicom_config

from triage.data.manifest import write_manifest
from triage.data.synth.cohort import StudySlot, plan_cohort
from triage.data.synth.config import SynthConfig
from triage.data.synth.dicom_writer import save
from triage.data.synth.dicomdir import write_dicomdir
from triage.data.synth.ground_truth import GROUND_TRUTH_FILE, manifest_frame, write_ground_truth
from triage.data.synth.serialize import study_datasets
from triage.data.synth.study import StudyTruth, build_study
from triage.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ExportSummary:
    """What `generate_export` wrote.

    Attributes:
        out_dir: export root.
        manifest_path: the manifest CSV.
        ground_truth_path: ground_truth.json in the export root.
        dicomdir_path: the DICOMDIR, when written.
        config: the resolved config.
        studies: ground truth per study (with HU volumes only if `keep_volumes`).
        n_files: DICOM files written (DICOMDIR excluded).
        seconds: wall time of the generation.
    """

    out_dir: Path
    manifest_path: Path
    ground_truth_path: Path
    dicomdir_path: Path | None
    config: SynthConfig
    studies: tuple[StudyTruth, ...]
    n_files: int
    seconds: float

    def study(self, study_uid: str) -> StudyTruth:
        """The study with this Study Instance UID.

        Raises:
            KeyError: if the export has no such study.
        """
        for study in self.studies:
            if study.study_uid == study_uid:
                return study
        raise KeyError(f"No study {study_uid} in the export at {self.out_dir}.")

    @property
    def n_patients(self) -> int:
        return len({s.slot.patient for s in self.studies})

    @property
    def prevalence(self) -> float:
        return sum(s.label for s in self.studies) / len(self.studies)


def _strip_volumes(study: StudyTruth) -> StudyTruth:
    series = tuple(dataclasses.replace(s, hu=None) for s in study.series)
    return dataclasses.replace(study, series=series)


def _write_study(root: Path, config: SynthConfig, slot: StudySlot, keep_volumes: bool,
                 ) -> tuple[StudyTruth, int]:
    """Render one study and write its files under `root`; top level so workers can pickle it."""
    study = build_study(config, slot, render=True)
    count = 0
    # Values come from the generator and are valid by construction (the tests re-read and
    # check them); skipping pydicom's per-element validation roughly halves the write time.
    with pydicom_config.disable_value_validation():
        for rel, ds in study_datasets(study):
            save(ds, root / rel)
            count += 1
    return (study if keep_volumes else _strip_volumes(study)), count


def _prepare(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"Output path {out_dir} exists and is not a directory.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"Output directory {out_dir} is not empty; choose a new directory "
                              "or pass overwrite (--overwrite) to replace a previous export.")
        if not (out_dir / GROUND_TRUTH_FILE).is_file():
            raise ConfigError(f"Refusing to overwrite {out_dir}: it has no {GROUND_TRUTH_FILE}, "
                              "so it is not a previous triage synth export.")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _relocate(studies: Sequence[StudyTruth], moved: dict[str, str]) -> list[StudyTruth]:
    """Studies with file paths and export paths rewritten to the DICOMDIR layout."""
    out = []
    for study in studies:
        series = tuple(dataclasses.replace(s, files=tuple(moved[f] for f in s.files))
                       for s in study.series)
        folder = "/".join(series[0].files[0].split("/")[:2])
        out.append(dataclasses.replace(study, series=series, export_path=folder))
    return out


def generate_export(
    out_dir: Path | str,
    config: SynthConfig | None = None,
    *,
    manifest_path: Path | str | None = None,
    keep_volumes: bool = False,
    overwrite: bool = False,
    workers: int = 1,
) -> ExportSummary:
    """Generate a synthetic export under `out_dir`.

    Args:
        out_dir: export root; must be empty or absent (see `overwrite`).
        config: what to generate (default `SynthConfig()`).
        manifest_path: manifest CSV (default ``out_dir/manifest.csv``).
        keep_volumes: keep every series' HU volume in the returned summary.
        overwrite: replace `out_dir` if it holds a previous synthetic export.
        workers: processes rendering studies in parallel (output is identical).

    Returns:
        the summary with per-study ground truth.

    Raises:
        ConfigError: for a non-empty `out_dir`, or `workers` < 1.

    Example:
        >>> summary = generate_export("out", SynthConfig(studies=4, slices=8))  # doctest: +SKIP
        >>> summary.studies[0].primary.geometry.pixel_spacing  # doctest: +SKIP
        (5.46875, 5.46875)
    """
    started = time.perf_counter()
    config = config or SynthConfig()
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.")
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    manifest = Path(manifest_path) if manifest_path else out_dir / "manifest.csv"
    slots = plan_cohort(config)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir)) if config.dicomdir else None
    root = staging or out_dir
    try:
        if workers == 1:
            results = [_write_study(root, config, slot, keep_volumes) for slot in slots]
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(_write_study, [root] * len(slots),
                                        [config] * len(slots), slots,
                                        [keep_volumes] * len(slots)))
        studies = [study for study, _ in results]
        n_files = sum(count for _, count in results)
        dicomdir = None
        if staging is not None:
            files = [f for study in studies for s in study.series for f in s.files]
            studies = _relocate(studies, write_dicomdir(staging, out_dir, files, config.seed))
            dicomdir = out_dir / "DICOMDIR"
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    write_manifest(manifest_frame(studies, config), manifest)
    truth = write_ground_truth(out_dir / GROUND_TRUTH_FILE, studies, config)
    summary = ExportSummary(out_dir, manifest, truth, dicomdir, config, tuple(studies), n_files,
                            time.perf_counter() - started)
    log.info("synthetic export: %d studies, %d patients, %d files, prevalence %.2f in %.1f s",
             len(studies), summary.n_patients, n_files, summary.prevalence, summary.seconds)
    return summary
