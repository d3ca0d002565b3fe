"""`run_source`: triage the studies a `Source` finds (a DICOMweb query) into worklists.

The same per-study path as a folder (`triage.run.pipeline`): each study is staged in a
bounded folder under ``OUT/staging`` by background threads (`FETCHERS` fetching at once,
at most `prefetch` studies staged ahead, handed on in order), scanned and grouped there,
fed as it comes to the ingest pool (`triage.ingest.stream.stream_ingest`, ``workers``
processes beside the model; the volume cached), and its files deleted once ingested: disk
holds a few studies per worker, whatever the archive size.
The model scores in batches, the rules route, the journal records each row, so a killed
run resumes: studies already journaled are not fetched again.

Every study found gets a row: one the server refuses for itself (HTTP 404, 403) gets a
``failed`` row naming the HTTP status. A server that stays unreachable, keeps answering a
transient status or keeps cutting its answers off stops the run (exit 3); the rerun
resumes. Rows an older version journaled for such a failure are redone.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.dicom.scan.grouping import StudyGroup, group_studies
from triage.dicom.scan.scan import scan_export
from triage.engines.stopwatch import Stopwatch
from triage.errors import ConfigError
from triage.ingest.config import IngestConfig
from triage.ingest.stream import failed_outcome, stream_ingest
from triage.io import atomic_write_text, prepare_out_dir
from triage.pacs.headers import HeaderStore
from triage.pacs.source import RetrievalError, Source, StudyRef
from triage.preprocess.cache import VolumeCache
from triage.run.pipeline import (
    CACHE_DIR,
    SUMMARY_NAME,
    Progress,
    RunResult,
    _provenance,
    _summary,
    _Triage,
    open_journal,
    progress_counter,
    stop_on_environmental,
)
from triage.run.worklist import StudyIdentifiers, write_worklists

if TYPE_CHECKING:
    from triage.registry.bundle import ModelBundle
    from triage.route import Router

LOGGER = logging.getLogger(__name__)
STAGING_DIR = "staging"
FETCHERS = 4  # studies fetched at once (at most `prefetch`)
#: What older versions journaled as a study's outcome for a gateway's transient status or
#: an answer cut off: the network's failure, not the study's.
_TRANSIENT_REASON = re.compile(
    r"^retrieval failed: (the DICOMweb server answered HTTP (408|425|429|500|502|503|504) "
    r"after \d+ tries|the server's answer could not be read \((ChunkedEncodingError|"
    r"ProtocolError|IncompleteRead)\))")


@dataclass
class _Staged:
    ref: StudyRef
    folder: Path | None = None
    error: BaseException | None = None
    seconds: float = 0.0


def _stage_one(source: Source, ref: StudyRef, folder: Path) -> _Staged:
    start = time.perf_counter()
    try:
        item = _Staged(ref, source.stage(ref, folder))
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        item = _Staged(ref, error=err)
    item.seconds = time.perf_counter() - start
    return item


def _stager(source: Source, refs: list[StudyRef], staging: Path, out: queue.Queue,
            stop: threading.Event, fetchers: int = 1) -> None:
    """Stage `refs` with up to `fetchers` threads, handing them to `out` in order.

    The first study is fetched alone (a server that is down fails one fetch, not
    `fetchers`); then `fetchers` at a time: disk holds at most the queue's size plus
    `fetchers` studies.
    """
    pending: deque[Future[_Staged]] = deque()
    pool = ThreadPoolExecutor(max(1, fetchers), thread_name_prefix="triage-fetch")
    try:
        n, window = 0, 1
        while (n < len(refs) or pending) and not stop.is_set():
            while n < len(refs) and len(pending) < window:
                pending.append(pool.submit(_stage_one, source, refs[n],
                                           staging / f"{n:06d}"))
                n += 1
            item = pending.popleft().result()
            window = max(1, fetchers)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    out.put(None)


def _belongs(uid: str, ref: StudyRef) -> bool:
    return uid == ref.study_uid or uid.startswith(ref.study_uid + "#")


def run_source(source: Source, out_dir: Path | str, *, bundle: ModelBundle, router: Router,
               workers: int | None = None, batch_size: int = 4, prefetch: int = 2,
               progress: Progress | None = None,
               model_name: str = "", model_version: str = "",
               device: str = "auto", runtime: str | None = None) -> RunResult:
    """Triage every study `source` finds into ``worklist.csv`` and ``review_worklist.csv``.

    Args:
        source: where the studies come from (`triage.pacs.dicomweb.DicomwebSource`).
        out_dir: output folder, as for `triage.run.pipeline.run_export`, plus
            ``headers/`` (what the SRs need) and ``staging/`` (emptied as it goes).
        bundle, router, batch_size, progress, model_name, model_version, device, runtime: as
            for `run_export`.
        workers: ingest processes fed with the staged studies as they arrive (default: one
            per available core; 1 = inline).
        prefetch: studies staged ahead of those being ingested (disk bound); at least
            ``2 * workers`` so that the pool is never starved.

    Returns:
        The result; ``rows`` has one row per study found (one per part of a study whose
        files disagree on the patient).

    Raises:
        EnvironmentalError: the server stayed unreachable, or the machine failed; the run
            stopped and a rerun resumes.
    """
    from triage.model.device import select_device

    start = time.perf_counter()
    if batch_size < 1 or prefetch < 1:
        raise ConfigError(f"batch_size and prefetch must be at least 1, got {batch_size} "
                          f"and {prefetch}.")
    from triage.engines.threads import available_cpus

    workers = max(1, workers or available_cpus())
    prefetch = max(prefetch, 2 * workers)
    device = str(select_device(device, option="device"))
    runtime = bundle.check_runtime(runtime)
    config = IngestConfig.from_dict(bundle.ingest_config,
                                    source="the model bundle's ingest_config")
    provenance = _provenance(bundle, router, model_name, model_version)
    out_dir = prepare_out_dir(out_dir)
    with stop_on_environmental(out_dir):
        return _run(source, out_dir, bundle=bundle, router=router, batch_size=batch_size,
                    workers=workers, prefetch=prefetch, progress=progress, device=device,
                    config=config, provenance=provenance, start=start, runtime=runtime)


def _run(source: Source, out_dir: Path, *, bundle: ModelBundle, router: Router,
         batch_size: int, workers: int, prefetch: int, progress: Progress | None, device: str,
         config: IngestConfig, provenance: dict[str, str], start: float,
         runtime: str) -> RunResult:
    clock = Stopwatch()
    journal = open_journal(out_dir, bundle, provenance, config)
    headers = HeaderStore(out_dir)
    with clock("find"):
        refs = list(source.find())
    redo = [uid for uid, row in journal.rows.items()
            if row.route == "failed" and _TRANSIENT_REASON.match(row.reasons)]
    for uid in redo:
        del journal.rows[uid]
    if redo:
        LOGGER.info("Run journal: %d studies failed for the network's or a gateway's "
                    "failure, not their own; fetching them again.", len(redo))
    todo = [r for r in refs if not any(_belongs(uid, r) for uid in journal.rows)]
    resumed = len(refs) - len(todo)
    LOGGER.info("%s: found %d studies; %d already done in the journal, %d to run.",
                source.description, len(refs), resumed, len(todo))
    on_row = progress_counter(progress, len(refs), resumed)

    identifiers = {r.study_uid: StudyIdentifiers(r.patient_id, r.accession_number,
                                                 r.study_date) for r in refs}
    cache_root = out_dir / CACHE_DIR
    staging = out_dir / STAGING_DIR
    triage = _Triage(bundle=bundle, router=router, journal=journal,
                     cache=VolumeCache(cache_root), config=config, export_dir=staging,
                     identifiers=identifiers, provenance=provenance, device=device,
                     batch_size=batch_size, on_row=on_row, clock=clock, runtime=runtime)
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left half-fetched
    staged: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    thread = threading.Thread(target=_stager, args=(source, todo, staging, staged, stop,
                                                    min(FETCHERS, prefetch)),
                              name="triage-stager", daemon=True)
    thread.start()
    counts = {"retrieval_failed": 0}
    stopped: list[BaseException] = []
    folder_of: dict[str, tuple[str, Path]] = {}  # study (part) UID -> (its ref, its folder)
    left: dict[str, int] = {}  # ref -> parts not yet ingested

    def studies() -> Iterator[StudyGroup]:
        """The staged studies, scanned; what failed to stage gets its row here."""
        for item in clock.timed(iter(staged.get, None), "retrieve_wait"):
            clock.seconds["retrieve"] = clock.seconds.get("retrieve", 0.0) + item.seconds
            if item.error is not None:
                if not isinstance(item.error, RetrievalError):
                    stopped.append(item.error)  # the pool finishes what it holds first
                    return
                counts["retrieval_failed"] += 1
                LOGGER.error("Study %s: %s.", item.ref.study_uid, item.error)
                _record_failed_headers(source, item.ref, headers)
                study = StudyGroup(item.ref.study_uid, {})
                triage.add(study, failed_outcome(study, str(item.error), stage="retrieve"))
                continue
            mine = _scan_staged(item, triage, config, headers, clock)
            left[item.ref.study_uid] = len(mine)
            for group in mine:
                folder_of[group.study_uid] = (item.ref.study_uid, item.folder)
            yield from mine

    try:
        for group, outcome in stream_ingest(studies(), config, cache_root, workers=workers,
                                            background=True, keep_arrays=True):
            triage.add(group, outcome)
            ref, folder = folder_of.pop(group.study_uid)
            left[ref] -= 1
            if not left[ref]:
                shutil.rmtree(folder, ignore_errors=True)  # the volume is cached
        triage.flush()  # journal what is ingested, also before the run stops
        if stopped:
            raise stopped[0]
    finally:
        stop.set()
        thread.join(timeout=5)
        shutil.rmtree(staging, ignore_errors=True)
    retrieval_failed = counts["retrieval_failed"]

    rows = [row for ref in refs for uid, row in journal.rows.items() if _belongs(uid, ref)]
    with clock("worklists"):
        write_worklists(rows, out_dir)  # review ties in the query's order, as `run_export`
    seconds = time.perf_counter() - start
    rows.sort(key=lambda r: r.study_uid)
    summary = _summary(rows, source=source.description, resumed=resumed,
                       processed=len(todo), retrieval_failed=retrieval_failed,
                       seconds=round(seconds, 3),
                       studies_per_minute=round(60 * len(todo) / seconds, 2) if seconds
                       else None, stage_seconds=clock.rounded(), **provenance)
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1))
    return RunResult(out_dir, rows, resumed, len(todo), seconds, summary)


def _scan_staged(item: _Staged, triage: _Triage, config: IngestConfig,
                 headers: HeaderStore, clock: Stopwatch) -> list[StudyGroup]:
    """Scan and group one staged study; its groups to ingest (none: the study got a
    failed row and its files are deleted)."""
    assert item.folder is not None
    with clock("scan"):
        groups = group_studies(scan_export(item.folder, workers=1, limits=config.limits))
    mine = [g for g in groups if _belongs(g.study_uid, item.ref)]
    unreadable = sum(1 for g in groups if g.is_pseudo)
    if unreadable:
        LOGGER.warning("Study %s: %d retrieved instances could not be read and are "
                       "left out.", item.ref.study_uid, unreadable)
    if not mine:
        shutil.rmtree(item.folder, ignore_errors=True)
        study = StudyGroup(item.ref.study_uid, {})
        triage.add(study, failed_outcome(
            study, f"none of the retrieved instances could be read ({unreadable} "
                   f"unreadable)", stage="retrieve"))
        return []
    for group in mine:
        headers.save_group(group)
    return mine


def _record_failed_headers(source: Any, ref: StudyRef, headers: HeaderStore) -> None:
    """What an SR of a study that could not be fetched needs: the study attributes the
    search returned, and the instances if the server still lists them."""
    listed = source.instances(ref) if hasattr(source, "instances") else []
    series: dict[str, list[list[str]]] = {}
    for attrs in listed:
        def value(tag: str, attrs: dict = attrs) -> str:
            return str((attrs.get(tag, {}).get("Value") or [""])[0])
        uid, sop_class, sop = value("0020000E"), value("00080016"), value("00080018")
        if uid and sop_class and sop:
            series.setdefault(uid, []).append([sop_class, sop])
    study = dict(ref.attributes)
    study.setdefault("0020000D", {"vr": "UI", "Value": [ref.study_uid]})
    headers.save(ref.study_uid, study, series)
