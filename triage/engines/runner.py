"""`ingest_export`: scan an export, then ingest every study in worker processes.

Memory stays bounded: at most ``2 * workers`` studies are in flight, and each worker
holds one series at a time. A worker that dies (e.g. a decoder crash) fails only the
studies it held: they are retried one at a time in a fresh process, and a study that
kills its process again is reported failed with that reason.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.engines import Engine
from triage.engines.local import LocalEngine
from triage.ingest.config import IngestConfig
from triage.ingest.report import StudyReport, inside_export, summarize, write_report
from triage.ingest.schedule import studies_largest_first
from triage.ingest.stream import _init_worker  # noqa: F401 - tests
from triage.io import atomic_write_text, lock_out_dir, remove_stale_temp
from triage.preprocess.stats import DeviceStatsAccumulator

LOGGER = logging.getLogger(__name__)
REPORT_NAME = "ingest_report.csv"
STATS_NAME = "device_stats.json"
SUMMARY_NAME = "ingest_summary.json"
CONFIG_NAME = "ingest_config.json"  # the resolved config, recorded with trained models
CACHE_DIR = "cache"


@dataclass
class IngestResult:
    """What `ingest_export` produced and where."""

    out_dir: Path
    reports: list[StudyReport]
    device_stats: DeviceStatsAccumulator
    non_dicom: int = 0
    scan_seconds: float = 0.0
    total_seconds: float = 0.0
    summary: dict = field(default_factory=dict)

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_NAME

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / CACHE_DIR


def ingest_export(export_dir: Path | str, out_dir: Path | str, config: IngestConfig | None = None,
                  *, workers: int | None = None,
                  progress: Callable[[int, int, StudyReport], None] | None = None,
                  engine: Engine | None = None) -> IngestResult:
    """Ingest every study of `export_dir` into `out_dir` (cache, report, device stats).

    Args:
        export_dir: the PACS export folder.
        out_dir: where ``cache/``, ``ingest_report.csv``, ``device_stats.json`` and
            ``ingest_summary.json`` go. A rerun reuses the cache.
        config: selection, loading and preprocessing settings (shipped default if None).
        workers: processes for scanning and loading (default: CPU count; 1 = inline).
        progress: called as ``progress(done, total, report)`` after each study.
        engine: what ingests the studies (default: the local engine with `workers`,
            `triage.engines`); the caller opens and closes it.

    Returns:
        The result; every study found appears exactly once in ``reports``.
    """
    start = time.perf_counter()
    config = config or IngestConfig.from_yaml()
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    release = lock_out_dir(out_dir)  # one ingest per folder; then its killed writes go
    try:
        remove_stale_temp(out_dir)
        return _ingest(export_dir, out_dir, config, engine or LocalEngine(
            max(1, workers or os.cpu_count() or 1)), progress, start)
    finally:
        release()


def _ingest(export_dir: Path, out_dir: Path, config: IngestConfig, engine: Engine,
            progress: Callable[[int, int, StudyReport], None] | None,
            start: float) -> IngestResult:
    cache_root = out_dir / CACHE_DIR
    scan = scan_export(export_dir, workers=engine.scan_workers, limits=config.limits)
    scan_seconds = time.perf_counter() - start
    studies = group_studies(scan)
    LOGGER.info("Scanned %d files in %.1f s: %d studies, %d unreadable, %d non-DICOM ignored.",
                len(scan.records), scan_seconds, len(studies), len(scan.errors),
                len(scan.non_dicom))

    # Largest first bounds the tail of the pool (`triage.ingest.schedule`).
    ordered = studies_largest_first(studies) if engine.parallel else studies
    reports: list[StudyReport] = []
    stats = DeviceStatsAccumulator()
    for _, outcome in engine.ingest(ordered, config, cache_root):
        reports.append(outcome.report)
        if outcome.device_stats:
            stats.merge(DeviceStatsAccumulator.from_dict(outcome.device_stats))
        if progress:
            progress(len(reports), len(studies), outcome.report)

    reports = [inside_export(r, export_dir) for r in reports]
    write_report(reports, out_dir / REPORT_NAME)
    stats.to_json(out_dir / STATS_NAME)
    total = time.perf_counter() - start
    summary = summarize(reports) | {
        "studies": len(reports), "files": len(scan.records),
        "non_dicom_ignored": len(scan.non_dicom),
        "links_outside_export": len(scan.links_outside_export),
        "scan_notes": list(scan.notes),
        "seconds": round(total, 3), **engine.describe(), "config": {
            "preprocess_fingerprint": config.preprocess.fingerprint()},
    }
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1))
    atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=1))
    return IngestResult(out_dir, reports, stats, len(scan.non_dicom), scan_seconds, total,
                        summary)
