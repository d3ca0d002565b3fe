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
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.dicom import codecs
from triage.dicom.grouping import StudyGroup, group_studies
from triage.dicom.scan import scan_export
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus, StudyReport, summarize, write_report
from triage.ingest.schedule import studies_largest_first
from triage.ingest.study import StudyOutcome, ingest_study
from triage.io import atomic_write_text
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


def _init_worker() -> None:
    # One BLAS thread per process (alignment's anti-aliasing is matrix products): workers
    # already use every core, and oversubscribed OpenBLAS threads made preprocessing
    # 2-8x slower with two workers on two cores.
    _one_blas_thread()


def _one_blas_thread() -> Any:
    """Limit BLAS to one thread (returns the limiter; ``restore_original_limits`` undoes).

    Inline runs (``workers=1``) use it too: "1 worker" then means one core, and OpenBLAS
    threads spinning against other work on the machine made the small products of
    alignment 2-30x slower.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _crashed(study: StudyGroup, err: BaseException) -> StudyOutcome:
    return StudyOutcome(StudyReport(
        study_uid=study.study_uid, status=IngestStatus.FAILED, stage="internal",
        n_series=len(study.series), n_files=study.file_count,
        reasons=f"the worker process died while loading this study ({type(err).__name__}); "
                "a decoder may have crashed on its pixel data"))


def _isolated(study: StudyGroup, config: IngestConfig, cache_root: Path) -> StudyOutcome:
    """Run one study in its own process, so that a crash fails only this study."""
    with ProcessPoolExecutor(1, initializer=_init_worker) as pool:
        try:
            return pool.submit(ingest_study, study, config, cache_root).result()
        except BrokenProcessPool as err:
            return _crashed(study, err)


def _run_pool(studies: list[StudyGroup], config: IngestConfig, cache_root: Path,
              workers: int) -> Iterator[StudyOutcome]:
    pending = list(reversed(studies_largest_first(studies)))  # pop() takes the largest
    retry: list[StudyGroup] = []
    window = 2 * workers
    while pending:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker)
        running: dict[Future, StudyGroup] = {}
        try:
            while pending or running:
                while pending and len(running) < window:
                    study = pending.pop()
                    running[pool.submit(ingest_study, study, config, cache_root)] = study
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    study = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        retry.append(study)
        except BrokenProcessPool:
            pass
        finally:
            retry.extend(running.values())
            pool.shutdown(wait=True, cancel_futures=True)
        for study in retry:
            LOGGER.warning("Worker died; retrying study %s in its own process.", study.study_uid)
            yield _isolated(study, config, cache_root)
        retry.clear()


def ingest_export(export_dir: Path | str, out_dir: Path | str, config: IngestConfig | None = None,
                  *, workers: int | None = None,
                  progress: Callable[[int, int, StudyReport], None] | None = None
                  ) -> IngestResult:
    """Ingest every study of `export_dir` into `out_dir` (cache, report, device stats).

    Args:
        export_dir: the PACS export folder.
        out_dir: where ``cache/``, ``ingest_report.csv``, ``device_stats.json`` and
            ``ingest_summary.json`` go. A rerun reuses the cache.
        config: selection, loading and preprocessing settings (shipped default if None).
        workers: processes for scanning and loading (default: CPU count; 1 = inline).
        progress: called as ``progress(done, total, report)`` after each study.

    Returns:
        The result; every study found appears exactly once in ``reports``.
    """
    start = time.perf_counter()
    config = config or IngestConfig.from_yaml()
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    workers = max(1, workers or os.cpu_count() or 1)
    cache_root = out_dir / CACHE_DIR
    scan = scan_export(export_dir, workers=workers)
    scan_seconds = time.perf_counter() - start
    studies = group_studies(scan)
    LOGGER.info("Scanned %d files in %.1f s: %d studies, %d unreadable, %d non-DICOM ignored.",
                len(scan.records), scan_seconds, len(studies), len(scan.errors),
                len(scan.non_dicom))

    inline = workers == 1 or len(studies) <= 1
    if inline:
        outcomes: Iterator[StudyOutcome] = (ingest_study(s, config, cache_root) for s in studies)
    else:
        codecs.preload({r.transfer_syntax for r in scan.records if r.transfer_syntax})
        outcomes = _run_pool(studies, config, cache_root, workers)
    reports: list[StudyReport] = []
    stats = DeviceStatsAccumulator()
    limiter = _one_blas_thread() if inline else None
    try:
        for outcome in outcomes:
            reports.append(outcome.report)
            if outcome.device_stats:
                stats.merge(DeviceStatsAccumulator.from_dict(outcome.device_stats))
            if progress:
                progress(len(reports), len(studies), outcome.report)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()

    write_report(reports, out_dir / REPORT_NAME)
    stats.to_json(out_dir / STATS_NAME)
    total = time.perf_counter() - start
    summary = summarize(reports) | {
        "studies": len(reports), "files": len(scan.records),
        "non_dicom_ignored": len(scan.non_dicom), "scan_notes": list(scan.notes),
        "seconds": round(total, 3), "config": {
            "preprocess_fingerprint": config.preprocess.fingerprint()},
    }
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1))
    atomic_write_text(out_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=1))
    return IngestResult(out_dir, reports, stats, len(scan.non_dicom), scan_seconds, total,
                        summary)
