"""Ingest studies in a bounded process pool and hand them back as they finish.

`stream_ingest` is the one pool behind `triage ingest` (`triage.ingest.runner`) and the
producer side of `triage run`: workers select, load, preprocess and cache studies
(`triage.ingest.study.ingest_study`) while the caller, suspended between two ``next()``
calls, merges statistics or runs inference on the ones already done. At most ``2 * workers`` studies
are in flight, so memory does not grow with the export. A study whose worker dies (a
decoder crash) is retried alone in a fresh process; if it kills that one too, it comes
back as a failed outcome. An exception from the pool machinery itself becomes a failed
outcome as well: one study never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from triage.dicom.grouping import StudyGroup
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus, StudyReport
from triage.ingest.study import StudyOutcome, ingest_study

LOGGER = logging.getLogger(__name__)


def _one_blas_thread():
    # One BLAS thread per ingest process, inline runs included ("1 worker" means one core):
    # oversubscribed OpenBLAS threads made the small products of alignment 2-30x slower.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _init_worker() -> None:
    _one_blas_thread()


def failed_outcome(study: StudyGroup, reason: str, stage: str = "internal") -> StudyOutcome:
    """A failed ingest outcome for `study` with `reason` (no patient identifier in it)."""
    return StudyOutcome(StudyReport(
        study_uid=study.study_uid, status=IngestStatus.FAILED, stage=stage,
        n_series=len(study.series), n_files=study.file_count,
        device_group=",".join(study.device_groups), reasons=reason))


def _crashed(study: StudyGroup, err: BaseException) -> StudyOutcome:
    return failed_outcome(study, f"the worker process died while ingesting this study "
                                 f"({type(err).__name__}); a decoder may have crashed on its "
                                 f"pixel data")


def _result(future: Future, study: StudyGroup) -> StudyOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        raise
    except Exception as err:  # noqa: BLE001 - e.g. a result that does not unpickle
        LOGGER.error("Ingest of study %s raised %s.", study.study_uid, type(err).__name__)
        return failed_outcome(study, f"internal error while ingesting ({type(err).__name__})")


def _isolated(study: StudyGroup, config: IngestConfig, cache_root: Path) -> StudyOutcome:
    with ProcessPoolExecutor(1, initializer=_init_worker) as pool:
        try:
            return _result(pool.submit(ingest_study, study, config, cache_root), study)
        except BrokenProcessPool as err:
            return _crashed(study, err)


def _inline(studies: Sequence[StudyGroup], config: IngestConfig, cache_root: Path
            ) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
    for study in studies:
        limiter = _one_blas_thread()
        try:
            outcome = ingest_study(study, config, cache_root)
        except Exception as err:  # noqa: BLE001 - ingest_study should not raise; be safe
            LOGGER.error("Ingest of study %s raised %s.", study.study_uid, type(err).__name__)
            outcome = failed_outcome(study, f"internal error while ingesting "
                                            f"({type(err).__name__})")
        finally:
            limiter.restore_original_limits()
        yield study, outcome


def stream_ingest(studies: Sequence[StudyGroup], config: IngestConfig, cache_root: Path | str,
                  *, workers: int = 1) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
    """Ingest `studies`, yielding ``(study, outcome)`` in completion order.

    Args:
        studies: the studies to ingest (each is yielded exactly once).
        config: selection, load and preprocess settings.
        cache_root: the volume cache folder.
        workers: worker processes; 1 ingests inline in the calling process.
    """
    cache_root = Path(cache_root)
    if workers <= 1 or len(studies) <= 1:
        yield from _inline(studies, config, cache_root)
        return
    pending = list(reversed(studies))  # pop() takes them in the given order
    window = 2 * workers
    while pending:
        suspects: list[StudyGroup] = []
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
                        outcome = _result(future, study)
                    except BrokenProcessPool:
                        suspects.append(study)
                        continue
                    yield study, outcome
        except BrokenProcessPool:
            pass
        finally:
            suspects.extend(running.values())
            pool.shutdown(wait=True, cancel_futures=True)
        for study in suspects:
            LOGGER.warning("A worker died; retrying study %s in its own process.",
                           study.study_uid)
            yield study, _isolated(study, config, cache_root)
