"""Ingest one study: select its series, load it, preprocess it, cache it.

`ingest_study` is pure (its inputs and outputs pickle) so that it runs in worker processes
and, at archive scale, in any distributed engine. It never raises for bad data: every
problem becomes a failed `StudyReport` with a reason naming the stage and what is wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from triage.dicom.pydicom_notes import capture_pydicom
from triage.dicom.scan.grouping import StudyGroup
from triage.dicom.select.selection import SeriesRef, SeriesSelection, select_series
from triage.dicom.volume.loader import load_series
from triage.errors import (
    DicomError,
    EnvironmentalError,
    GeometryError,
    TriageError,
    describe_environmental,
    is_environmental,
)
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus, StudyReport
from triage.ingest.volume_qc import measure_volume
from triage.io import atomic_write_text
from triage.preprocess.cache import VolumeCache
from triage.preprocess.pipeline import preprocess
from triage.preprocess.stats import DeviceStatsAccumulator, sample_slices

LOGGER = logging.getLogger(__name__)
STATS_DIR = "device_stats"
QC_DIR = "volume_qc"


@dataclass(frozen=True)
class StudyOutcome:
    """What a worker sends back: the report row and this study's device statistics.

    ``array`` is the prepared volume as cached (float32), sent back only when the caller
    asked for it (``keep_array``) and the study was loaded now rather than found in the
    cache: `triage run` scores it without reading back what the worker just wrote.
    ``volume_qc`` is `triage.ingest.volume_qc.VolumeQC.to_dict()` of the native volume
    (None when no volume was loaded, or a cache entry predates it).
    """

    report: StudyReport
    device_stats: dict[str, Any] | None = None
    array: np.ndarray | None = None
    volume_qc: dict[str, Any] | None = None


def source_fingerprint(series: SeriesRef) -> str:
    """Identity of a series' source files without reading pixels: UIDs and file sizes.

    A changed, added or removed file changes the fingerprint, and so the cache key.
    """
    parts = sorted(f"{r.sop_instance_uid}:{r.file_size}" for r in series.instances)
    return "|".join([series.study_uid, series.series_uid, *parts])


def _base_report(study: StudyGroup, selection: SeriesSelection) -> StudyReport:
    chosen = selection.chosen
    rejected = "; ".join(str(r) for r in selection.rejected)
    warnings = list(selection.warnings)
    return StudyReport(
        study_uid=study.study_uid,
        status=IngestStatus.FAILED,
        series_uid=chosen.series_uid if chosen else "",
        series_number="" if not chosen or chosen.series_number is None
        else str(chosen.series_number),
        modality=(chosen.modality or "") if chosen else study.modality,
        device_group=chosen.device_group if chosen else study.device_group,
        n_series=len(study.series),
        n_files=study.file_count,
        n_slices=chosen.slices if chosen else 0,
        reasons=selection.reason or "",
        warnings="; ".join(warnings),
        rejected_series=rejected,
        stage="scan" if study.is_pseudo else ("selection" if chosen is None else ""),
    )


def _stats_path(cache: VolumeCache, key: str) -> Path:
    return cache.root / STATS_DIR / f"{key}.json"


def _qc_path(cache: VolumeCache, key: str) -> Path:
    return cache.root / QC_DIR / f"{key}.json"


def ingest_study(study: StudyGroup, config: IngestConfig, cache_root: Path | str,
                 decoded: Mapping[str, np.ndarray] | None = None, *,
                 keep_array: bool = False) -> StudyOutcome:
    """Select, load, preprocess and cache the series of `study` that will be classified.

    A rerun with the same files and config reuses the cached volume without decoding.

    Args:
        study: the study's files, grouped by series.
        config: selection, load and preprocess settings.
        cache_root: the volume cache folder.
        decoded: stored pixel values of the chosen series' files decoded beforehand (in
            parts, by other processes), as ``load_series(..., decoded=...)`` takes them;
            the result is the same with or without.
        keep_array: also return the prepared volume when it was made now (not on a
            cache hit), as the cache holds it.

    Returns:
        The report row and, for a CT volume, its device statistics.
    """
    try:
        selection = select_series(study, config.selection)
        report = _base_report(study, selection)
        if selection.chosen is None:
            return StudyOutcome(report)
        return _load_and_cache(selection.chosen, report, config, VolumeCache(cache_root),
                               decoded, keep_array)
    except BaseException as err:  # noqa: BLE001 - one bad study never stops a batch
        # BaseException: a native library's panic (pyo3's PanicException) is one too.
        if isinstance(err, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        if is_environmental(err):  # the machine, not the study: never its outcome
            raise EnvironmentalError(f"Ingesting study {study.study_uid} failed: "
                                     f"{describe_environmental(err)}.") from err
        LOGGER.exception("Unexpected error while ingesting study %s", study.study_uid)
        report = StudyReport(study_uid=study.study_uid, status=IngestStatus.FAILED,
                             stage="internal", n_series=len(study.series),
                             modality=study.modality, device_group=study.device_group,
                             n_files=study.file_count,
                             reasons=f"internal error ({type(err).__name__}): {err}")
        return StudyOutcome(report)


def series_to_load(study: StudyGroup, config: IngestConfig, cache_root: Path | str
                   ) -> SeriesRef | None:
    """The series `ingest_study` would decode for `study`, from headers alone.

    Args:
        study: the study's files, grouped by series.
        config: selection and preprocess settings (they make the cache key).
        cache_root: the volume cache folder.

    Returns:
        The chosen series, or None when none is chosen or its volume is already cached.
    """
    chosen = select_series(study, config.selection).chosen
    if chosen is None:
        return None
    cache = VolumeCache(cache_root)
    key = cache.key(source_fingerprint(chosen), config.preprocess)
    if _sidecar(cache, key, study.study_uid) is not None:
        return None
    return chosen


def _sidecar(cache: VolumeCache, key: str, study_uid: str) -> dict[str, Any] | None:
    """The sidecar of a usable cache entry of `key`; None means make the volume (again)."""
    try:
        sidecar = cache.read_sidecar(key)
    except (OSError, ValueError):  # torn by a power cut (entries are not fsynced): remake
        return None
    if sidecar is not None and not cache.looks_intact(key, sidecar):
        LOGGER.warning("The cached volume of study %s (entry %s) has lost its file or part "
                       "of it; making it again.", study_uid, key)
        return None
    return sidecar


def _load_and_cache(series: SeriesRef, report: StudyReport, config: IngestConfig,
                    cache: VolumeCache, decoded: Mapping[str, np.ndarray] | None,
                    keep_array: bool) -> StudyOutcome:
    fingerprint = source_fingerprint(series)
    key = cache.key(fingerprint, config.preprocess)
    sidecar = _sidecar(cache, key, report.study_uid)
    if sidecar is not None:  # the sidecar is written last: its presence commits the entry
        stats = _read_json(_stats_path(cache, key))
        return StudyOutcome(replace(
            report, status=IngestStatus.OK, verdict=sidecar.get("verdict", ""),
            cache_key=key, cache_hit=True,
            warnings=_join(report.warnings, *sidecar.get("warnings", []))), stats,
            volume_qc=_read_json(_qc_path(cache, key)))
    with capture_pydicom() as notes:  # pydicom's warnings: report warnings, not stderr
        try:
            # Irregular slices stay as acquired: preprocessing interpolates them once.
            # The scan's walk of each header goes along with its record: not walked twice.
            volume = load_series([r.path for r in series.instances], options=config.load,
                                 decoded=decoded, keep_irregular=True,
                                 walked=[r.walked for r in series.instances])
        except DicomError as err:
            error = err
        else:
            error = None
    report = replace(report, warnings=_join(report.warnings, *_pydicom_warnings(notes)))
    if isinstance(error, GeometryError):
        verdict = getattr(error, "verdict", None)
        return StudyOutcome(replace(report, stage="load",
                                    reasons=_join(report.reasons, str(error)),
                                    verdict=verdict.value if verdict is not None else ""))
    if error is not None:
        if is_environmental(error):  # e.g. an I/O error of the disk, wrapped by the loader
            raise error
        return StudyOutcome(replace(report, stage="load",
                                    reasons=_join(report.reasons, str(error))))
    # QC and device statistics read the native HU values, so they come first: preprocessing
    # then clips the volume in place. Their files are written only for a prepared volume.
    # Both read the same evenly spaced slices: sampled once.
    sample = sample_slices(volume.array)
    qc = measure_volume(volume, sample).to_dict()
    stats = None
    if volume.modality == "CT":
        acc = DeviceStatsAccumulator()
        acc.add(volume, sample)
        stats = acc.to_dict()
    del sample  # 4 MiB for a 256² series: not held through preprocessing
    try:
        prepared = preprocess(volume, config.preprocess, consume=True)
    except TriageError as err:
        return StudyOutcome(replace(report, stage="preprocess", verdict=volume.verdict.value,
                                    reasons=_join(report.reasons, str(err))))
    atomic_write_text(_qc_path(cache, key), json.dumps(qc), durable=False)
    if stats is not None:
        # Unsynced like the cache entry it belongs to; an unreadable one reads as None.
        atomic_write_text(_stats_path(cache, key), json.dumps(stats), durable=False)
    cache.put(prepared, source_fingerprint=fingerprint, config=config.preprocess)
    return StudyOutcome(replace(
        report, status=IngestStatus.OK, verdict=volume.verdict.value, cache_key=key,
        modality=volume.modality, n_slices=int(volume.shape[2]),
        warnings=_join(report.warnings, *prepared.warnings)), stats,
        np.ascontiguousarray(prepared.array, dtype=np.float32) if keep_array else None, qc)


def _pydicom_warnings(notes: list[str], limit: int = 3) -> list[str]:
    """pydicom's messages (already redacted) as report warnings, at most `limit` of them."""
    shown = [f"pydicom: {note}" for note in notes[:limit]]
    if len(notes) > limit:
        shown.append(f"pydicom: {len(notes) - limit} more message(s)")
    return shown


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _join(*parts: str) -> str:
    seen: list[str] = []
    for part in parts:
        if part and part not in seen:
            seen.append(part)
    return "; ".join(seen)

