"""`run_export`: a PACS export in, per-study worklists out (ingest → inference → rules).

The driver scans the export and lists its studies; an engine (`triage.engines`) ingests
and scores them: by default this machine's worker processes ingest (`triage.ingest.
stream`) while the main process scores the finished ones in batches with the model bundle
(`triage.engines.local`), or a Ray cluster does both (`triage.engines.ray`). The driver
routes each scored study with the rules and journals it at once (`triage.run.journal`),
so a killed run resumes where it stopped, and the worklists are written from the journal
at the end. Memory stays flat: an engine holds a bounded window of studies, and arrays are
dropped as soon as they are scored. `_Triage` is also the consumer of the other sources
of studies (`triage.pacs`): it takes ingested studies one by one (`add`) and scores them
with the same functions (`triage.engines.scoring`).

A cache entry that fails to read back (damaged since its worker found it) is made again in
the main process. Any failure of one study (ingest, inference, routing) becomes that
study's ``failed`` (or ``review``) row with a reason; nothing one study does stops the
batch. Logs name studies by UID only: identifiers go to the worklist and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.dicom.device import UNKNOWN_DEVICE
from triage.dicom.scan.grouping import StudyGroup, group_studies
from triage.dicom.scan.scan import scan_export
from triage.engines import Engine, Scored, TriageJob
from triage.engines.local import LocalEngine
from triage.engines.scoring import score_batch, volume_for
from triage.engines.stopwatch import Stopwatch
from triage.errors import (
    ConfigError,
    EnvironmentalError,
    describe_environmental,
    is_environmental,
)
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus, StudyReport, inside_export
from triage.ingest.schedule import studies_largest_first
from triage.ingest.study import StudyOutcome
from triage.ingest.volume_qc import VolumeQC
from triage.io import atomic_write_text, prepare_out_dir
from triage.preprocess.cache import VolumeCache
from triage.run.distance import input_distance
from triage.run.journal import JOURNAL_NAME, Journal
from triage.run.worklist import (
    REVIEW_NAME,
    WORKLIST_NAME,
    StudyIdentifiers,
    WorklistRow,
    study_identifiers,
    write_worklists,
)

if TYPE_CHECKING:
    from triage.registry.bundle import ModelBundle
    from triage.route import Router
    from triage.route.types import RouteDecision, StudyEvidence

LOGGER = logging.getLogger(__name__)
CACHE_DIR = "cache"
SUMMARY_NAME = "run_summary.json"

Progress = Callable[[int, int, "WorklistRow | None"], None]


@dataclass
class RunResult:
    """What `run_export` produced.

    Attributes:
        out_dir: the output folder (worklists, journal, cache, summary).
        rows: one row per study found in the export, sorted by study UID.
        resumed: studies whose rows came from an earlier, interrupted run's journal.
        processed: studies ingested, scored and routed by this run.
        seconds: wall time of this run.
        summary: counts per route and per device group, the run's provenance and where
            its wall time went (what ``run_summary.json`` holds).
    """

    out_dir: Path
    rows: list[WorklistRow]
    resumed: int = 0
    processed: int = 0
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def worklist_path(self) -> Path:
        return self.out_dir / WORKLIST_NAME

    @property
    def review_path(self) -> Path:
        return self.out_dir / REVIEW_NAME

    @property
    def all_failed(self) -> bool:
        """No study could be triaged (also true for an export without studies)."""
        return all(r.route == "failed" for r in self.rows)


@dataclass(frozen=True)
class _Pending:
    study: StudyGroup
    outcome: StudyOutcome  # with its volume (``outcome.array``)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _split(text: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in text.split("; ")) if part)


class _Triage:
    """Scores, routes and journals finished studies (the consumer side of the pipeline).

    `export_dir` is the folder the studies' files were scanned from (the export, the
    listener's spool, the pull's staging folder): every row's reasons and warnings name
    files relative to it, as `triage ingest`'s report does (`inside_export`).
    """

    def __init__(self, *, bundle: ModelBundle, router: Router, journal: Journal,
                 cache: VolumeCache, config: IngestConfig, export_dir: Path,
                 identifiers: dict[str, StudyIdentifiers],
                 provenance: dict[str, str], device: str, batch_size: int,
                 on_row: Callable[[WorklistRow], None], clock: Stopwatch,
                 runtime: str | None = None) -> None:
        self.bundle, self.router, self.journal, self.cache = bundle, router, journal, cache
        self.config, self.export_dir = config, export_dir
        self.identifiers, self.provenance = identifiers, provenance
        self.device, self.batch_size, self.on_row = device, batch_size, on_row
        self.clock, self.runtime = clock, runtime
        self.batch: list[_Pending] = []

    def add(self, study: StudyGroup, outcome: StudyOutcome) -> None:
        """Take one ingested study: queue it for the model, or route it now."""
        report = outcome.report
        if report.status is not IngestStatus.OK:
            self._finish([(study, outcome, None, "")])
            return
        if outcome.array is None:  # the worker found the volume cached: read it back
            outcome = self._from_cache(study, outcome)
        if outcome.array is None:
            self._finish([(study, outcome, None, "" if outcome.report.status
                           is not IngestStatus.OK else "the cached volume could not be "
                                                       "read back, nor made again")])
            return
        self.batch.append(_Pending(study, outcome))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def _from_cache(self, study: StudyGroup, outcome: StudyOutcome) -> StudyOutcome:
        """`outcome` with its cached volume, or the study ingested again here if the entry
        no longer reads back (damaged since the worker found it)."""
        return volume_for(study, outcome, self.config, self.cache, self.clock)[0]

    def flush(self) -> None:
        """Score the queued volumes in one batch, route them and journal them."""
        batch, self.batch = self.batch, []
        if not batch:
            return
        scores = score_batch(self.bundle, [b.outcome.array for b in batch],
                             device=self.device, batch_size=self.batch_size,
                             uids=[b.study.study_uid for b in batch], clock=self.clock,
                             runtime=self.runtime)
        self._finish([(b.study, b.outcome, p, e) for b, (p, e) in zip(batch, scores,
                                                                      strict=True)])

    def finish(self, scored: list[Scored]) -> None:
        """Route studies an engine scored and journal their rows together."""
        self._finish([(s.study, s.outcome, s.p, s.error) for s in scored])

    def _finish(self, items: list[tuple[StudyGroup, StudyOutcome, float | None, str]]) -> None:
        with self.clock("route_and_journal"):
            rows = [self._row(study, outcome, p, error) for study, outcome, p, error in items]
            self.journal.append(rows)
        for row in rows:
            self.on_row(row)

    def _row(self, study: StudyGroup, outcome: StudyOutcome, p: float | None,
             inference_error: str) -> WorklistRow:
        report = inside_export(outcome.report, self.export_dir)
        distance = None
        try:
            if report.status is IngestStatus.OK:
                distance = input_distance(outcome.device_stats, self.bundle.device_stats)
            decision = self.router.route(self._evidence(report, p, inference_error, distance,
                                                        outcome.volume_qc))
        except Exception as err:  # noqa: BLE001 - the study fails, the batch goes on
            if is_environmental(err):
                raise
            LOGGER.error("Routing study %s raised %s; it is reported failed.",
                         study.study_uid, type(err).__name__)
            decision = self._failed_decision(report, f"routing error ({type(err).__name__}): "
                                                     f"{err}")
        ids = self.identifiers.get(study.study_uid, StudyIdentifiers())
        return WorklistRow(
            study_uid=study.study_uid, accession_number=ids.accession_number,
            patient_id=ids.patient_id, study_date=ids.study_date, modality=report.modality,
            device_group=report.device_group, series_uid=report.series_uid,
            route=str(decision.route), priority=int(decision.priority),
            p_calibrated="" if p is None else f"{p:.6f}",
            reasons="; ".join(decision.reasons), rule_ids="; ".join(decision.rule_ids),
            ingest_status=report.status.value, verdict=report.verdict,
            warnings=report.warnings,
            input_distance="" if distance is None else f"{distance:.4f}",
            processed_at=_now(), guarantee=decision.guarantee,
            priority_reason=decision.priority_reason, **self.provenance)

    @staticmethod
    def _evidence(report: StudyReport, p: float | None, inference_error: str,
                  distance: float | None, volume_qc: dict[str, Any] | None = None
                  ) -> StudyEvidence:
        from triage.route.types import StudyEvidence

        qc = VolumeQC.from_dict(volume_qc)
        return StudyEvidence(
            study_uid=report.study_uid, device_group=report.device_group,
            modality=report.modality, ingest_ok=report.status is IngestStatus.OK,
            ingest_reasons=report.reasons, verdict=report.verdict,
            warnings=_split(report.warnings), n_slices=report.n_slices, p_calibrated=p,
            inference_error=inference_error, input_distance=distance,
            matrix=qc.matrix if qc else None, intensity_std=qc.intensity_std if qc else None,
            body_fraction=qc.body_fraction if qc else None)

    def _failed_decision(self, report: StudyReport, reason: str) -> RouteDecision:
        """The router's own ``failed`` decision for `reason`, or a plain one if it fails."""
        from triage.route.types import Priority, Route, RouteDecision

        try:
            evidence = self._evidence(report, None, reason, None)
            decision = self.router.route(evidence)
            if decision.route == Route.FAILED:
                return decision
        except Exception:  # noqa: BLE001, S110 - fall back to a decision made here
            pass
        return RouteDecision(route=Route.FAILED, priority=int(Priority.FAILED),
                             rule_ids=("run.internal",), reasons=(reason,))


def _provenance(bundle: ModelBundle, router: Router, model_name: str, model_version: str
                ) -> dict[str, str]:
    return {"model_name": model_name, "model_version": model_version or bundle.created_utc,
            "temperature": f"{bundle.temperature:.6g}", "rules_version": str(router.version)}


def _summary(rows: list[WorklistRow], **extra: Any) -> dict[str, Any]:
    by_device: dict[str, Counter] = {}
    for row in rows:
        by_device.setdefault(row.device_group or UNKNOWN_DEVICE, Counter())[row.route] += 1
    guarantees = Counter(f"{r.route}: {r.guarantee}" for r in rows if r.guarantee)
    return {"studies": len(rows), "route": dict(sorted(Counter(r.route for r in rows).items())),
            "device_group": {g: dict(sorted(c.items())) for g, c in sorted(by_device.items())},
            "guarantee": dict(sorted(guarantees.items())), **extra}


def _certification(router: Router, bundle: ModelBundle) -> dict[str, Any]:
    """The thresholds' certification status per device group (no identifiers)."""
    from triage.route.status import certification_status

    return certification_status(router.thresholds, bundle.train_devices)


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")  # loaded with the model; not imported just to ask
    return torch.get_num_threads() if torch is not None else None


def _stopped(err: BaseException, journal_path: Path) -> EnvironmentalError:
    return EnvironmentalError(
        f"The run stopped: {describe_environmental(err).rstrip('.')}. No study was "
        f"recorded as failed because of it; the studies finished so far are kept in "
        f"{journal_path}: fix the cause and rerun the same command to resume.")


@contextmanager
def stop_on_environmental(out_dir: Path) -> Iterator[None]:
    """A failure of the machine (disk, device, network) inside the block stops the run, with
    where its finished studies are kept: it is never written down as a study's outcome."""
    try:
        yield
    except EnvironmentalError as err:
        raise _stopped(err, out_dir / JOURNAL_NAME) from err
    except Exception as err:
        if is_environmental(err):
            raise _stopped(err, out_dir / JOURNAL_NAME) from err
        raise


def run_export(export_dir: Path | str, out_dir: Path | str, *, bundle: ModelBundle,
               router: Router, workers: int | None = None, batch_size: int = 4,
               progress: Progress | None = None, model_name: str = "",
               model_version: str = "", device: str = "auto",
               runtime: str | None = None, engine: Engine | None = None) -> RunResult:
    """Triage every study of `export_dir` into ``worklist.csv`` and ``review_worklist.csv``.

    Args:
        export_dir: the PACS export folder.
        out_dir: output folder: the worklists, ``journal.jsonl``, ``run_summary.json`` and
            ``cache/``. A folder holding the journal of an interrupted run with the same
            model and rules is resumed: its finished studies are not redone.
        bundle: the model; its ingest config decides selection and preprocessing, so
            volumes are made exactly as for training.
        router: the rules (`triage.route.Router`).
        workers: ingest processes of the default local engine (default: one per
            available core; 1 = inline, no overlap). With more than one they run at the
            lowest CPU priority beside inference (`triage.engines.threads`). Ignored when
            `engine` is given.
        batch_size: volumes per forward pass.
        progress: called as ``progress(done, total, row)`` after each study (and once
            with ``row=None`` before the first).
        model_name: model name recorded in every row.
        model_version: model version recorded in every row (default: the bundle's
            creation time).
        device: torch device for inference (``auto``: CUDA, then MPS, then CPU).
        runtime: ``torch`` or ``onnx`` (ONNX Runtime on the bundle's ONNX graph); None:
            the bundle's own runtime, the one its thresholds were fitted with.
        engine: what ingests and scores the studies (`triage.engines`; default: the
            local engine with `workers`); the caller opens and closes it.

    Returns:
        The result; ``rows`` has exactly one row per study found.

    Raises:
        ConfigError: `export_dir` is not a folder, `out_dir` cannot be written, a bad
            `batch_size`, `device` or ingest config.
        BundleError: the bundle cannot run on `runtime` (`ModelBundle.check_runtime`).
        JournalError: `out_dir` holds the journal of another model or rules version.
        EnvironmentalError: the machine failed (disk full or read-only, device, out of
            memory): the run stopped, no study was failed for it, and a rerun resumes.
    """
    start = time.perf_counter()
    clock = Stopwatch()
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    if not export_dir.is_dir():
        raise ConfigError(f"Export folder {export_dir} does not exist or is not a folder.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    engine = engine or LocalEngine(workers)
    if engine.scores_in_driver:  # before any ingest
        from triage.model.device import select_device  # imports torch

        device = str(select_device(device, option="device"))
    else:  # the engine's workers pick their devices; this process needs no torch
        from triage.model.config import check_device_name

        check_device_name(device, option="device")
    runtime = bundle.check_runtime(runtime)
    config = IngestConfig.from_dict(bundle.ingest_config,
                                    source="the model bundle's ingest_config")
    provenance = _provenance(bundle, router, model_name, model_version)
    prepare_out_dir(out_dir)
    with stop_on_environmental(out_dir):
        return _run(export_dir, out_dir, bundle=bundle, router=router, engine=engine,
                    batch_size=batch_size, progress=progress, device=device,
                    config=config, provenance=provenance, start=start, clock=clock,
                    runtime=runtime)


def progress_counter(progress: Progress | None, total: int, done: int
                     ) -> Callable[[WorklistRow], None]:
    """Report `done` of `total` now, and one more with each row the returned callback gets
    (every source of studies counts its progress this way)."""
    count = done
    if progress:
        progress(count, total, None)

    def on_row(row: WorklistRow) -> None:
        nonlocal count
        count += 1
        if progress:
            progress(count, total, row)

    return on_row


def open_journal(out_dir: Path, bundle: ModelBundle, provenance: dict[str, str],
                 config: IngestConfig) -> Journal:
    """The run journal of `out_dir`, identified by the model, rules and preprocessing (the
    one identity every source of studies shares: `triage.pacs.pull` too)."""
    return Journal(out_dir / JOURNAL_NAME, identity={
        "model_created_utc": bundle.created_utc, "code_version": bundle.code_version,
        "temperature": provenance["temperature"], "rules_version": provenance["rules_version"],
        "preprocess": config.preprocess.fingerprint()})


def _run(export_dir: Path, out_dir: Path, *, bundle: ModelBundle, router: Router,
         engine: Engine, batch_size: int, progress: Progress | None, device: str,
         config: IngestConfig, provenance: dict[str, str], start: float, clock: Stopwatch,
         runtime: str) -> RunResult:
    journal = open_journal(out_dir, bundle, provenance, config)
    try:
        return _run_journaled(export_dir, out_dir, journal, bundle=bundle, router=router,
                              engine=engine, batch_size=batch_size, progress=progress,
                              device=device, config=config, provenance=provenance,
                              start=start, clock=clock, runtime=runtime)
    finally:
        journal.close()  # the folder's lock: another run may start now


def _run_journaled(export_dir: Path, out_dir: Path, journal: Journal, *, bundle: ModelBundle,
                   router: Router, engine: Engine, batch_size: int,
                   progress: Progress | None, device: str, config: IngestConfig,
                   provenance: dict[str, str], start: float, clock: Stopwatch,
                   runtime: str) -> RunResult:
    resumed_before = len(journal)
    job = TriageJob(config=config, cache_root=out_dir / CACHE_DIR, bundle=bundle,
                    device=device, batch_size=batch_size, clock=clock, runtime=runtime)
    engine.prepare(job)  # e.g. Ray's inference actors start while the export is scanned

    with clock("scan"):
        scan = scan_export(export_dir, workers=engine.scan_workers, limits=config.limits)
        studies = group_studies(scan)
        n_files, n_non_dicom = len(scan.records), len(scan.non_dicom)
        del scan
        identifiers = {s.study_uid: study_identifiers(s) for s in studies}
    todo = [s for s in studies if s.study_uid not in journal]
    resumed = len(studies) - len(todo)
    LOGGER.info("Found %d studies in %d files; %d already done in the journal, %d to run.",
                len(studies), n_files, resumed, len(todo))
    on_row = progress_counter(progress, len(studies), resumed)

    triage = _Triage(bundle=bundle, router=router, journal=journal,
                     cache=VolumeCache(out_dir / CACHE_DIR), config=config,
                     export_dir=export_dir, identifiers=identifiers,
                     provenance=provenance, device=device, batch_size=batch_size,
                     on_row=on_row, clock=clock, runtime=runtime)
    # Largest first bounds the tail of the pool (`triage.ingest.schedule`); rows are
    # sorted when the worklists are written, so the order does not show.
    order = studies_largest_first(todo) if engine.parallel else todo
    for scored in engine.triage(order, job):
        triage.finish(scored)

    rows = [journal.rows[s.study_uid] for s in studies]
    stale = resumed_before - resumed
    if stale:
        LOGGER.info("%d journaled studies are no longer in the export and are left out.",
                    stale)
    with clock("worklists"):
        # Ties of the review worklist in the export's order, not in the order the studies
        # finished: with workers that varies, and a resumed run must equal an unbroken one.
        write_worklists(rows, out_dir)
    seconds = time.perf_counter() - start
    rows.sort(key=lambda r: r.study_uid)
    summary = _summary(rows, resumed=resumed, processed=len(todo), files=n_files,
                       non_dicom_ignored=n_non_dicom, seconds=round(seconds, 3),
                       studies_per_minute=round(60 * len(todo) / seconds, 2) if seconds else None,
                       **engine.describe(), inference_threads=_torch_threads(),
                       runtime=runtime,
                       stage_seconds=clock.rounded(),
                       certification=_certification(router, bundle), **provenance)
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1))
    return RunResult(out_dir, rows, resumed, len(todo), seconds, summary)
