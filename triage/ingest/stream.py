"""Ingest studies in a bounded process pool and hand them back as they finish.

`stream_ingest` is the one pool behind `triage ingest` (`triage.engines.runner`) and the
producer side of `triage run`: workers select, load, preprocess and cache studies
(`triage.ingest.study.ingest_study`) while the caller, suspended between two ``next()``
calls, merges statistics or runs inference on the ones already done. Studies are submitted
in the given order (callers put the largest first). Where the pool would otherwise end
with one worker decoding a long compressed series alone (`triage.ingest.schedule.
plan_series`; always so for a one-study export), that study's chosen series is first
decoded in one part per worker, and the study then ingested from the decoded parts,
which gives the same volume (`triage.ingest.parallel_load.decode_part`). At most
``2 * workers`` jobs (studies or parts) are in flight, so memory does not grow with the
export. A study whose worker dies (a decoder crash), in a part or in its ingest, is retried
whole and alone in a fresh process; if it kills that one too, it comes back as a failed
outcome. An exception from the pool machinery itself becomes a failed outcome as well: one
study never stops the batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage.dicom.pixels import codecs
from triage.dicom.scan.grouping import StudyGroup
from triage.errors import EnvironmentalError, is_environmental
from triage.ingest.config import IngestConfig
from triage.ingest.lifeline import die_with_parent
from triage.ingest.parallel_load import decode_part, merge_parts
from triage.ingest.report import IngestStatus, StudyReport
from triage.ingest.schedule import plan_series
from triage.ingest.study import StudyOutcome, ingest_study, series_to_load
from triage.processes import forkserver_available, worker_context

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

LOGGER = logging.getLogger(__name__)


def _one_blas_thread():
    # One BLAS thread per ingest process, inline runs included ("1 worker" means one core):
    # oversubscribed OpenBLAS threads made the small products of alignment 2-30x slower.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _blas_controller():
    """The process's thread pools, listed once for a whole inline stream.

    Listing them walks every loaded shared library: ~3 ms once torch is loaded (`triage
    run`), per study when done per study; limiting and restoring a listed pool is ~10 us.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


WORKER_NICENESS = 19
"""The niceness of background workers: the lowest priority on Unix."""


def lower_priority(niceness: int = WORKER_NICENESS) -> int | None:
    """Run the calling process at `niceness` (never raising a priority that is lower).

    Returns:
        The process's niceness afterwards, or None where the OS has no niceness (Windows)
        or refuses the change (the process then keeps its priority).
    """
    if not hasattr(os, "nice"):
        return None
    try:
        current = os.nice(0)
        return os.nice(niceness - current) if current < niceness else current
    except OSError:
        return None


def _process_pool(workers: int, background: bool) -> ProcessPoolExecutor:
    """A pool of `workers` ingest processes (`_init_worker`), lowered when `background`,
    started from a forkserver (`triage.processes`): their memory does not grow with what
    the caller holds.

    The pool's module loads multiprocessing (~13 ms), which an inline stream (one worker)
    never needs: it is imported here, and a dead pool is caught as `BrokenExecutor`, the
    base of its ``BrokenProcessPool``.
    """
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=worker_context(),
                               initializer=_init_worker, initargs=(background, os.getpid()))


def _init_worker(background: bool = False, parent: int | None = None) -> None:
    die_with_parent(parent)  # a killed run leaves no worker behind
    _one_blas_thread()
    if background:
        lower_priority()


def failed_outcome(study: StudyGroup, reason: str, stage: str = "internal") -> StudyOutcome:
    """A failed ingest outcome for `study` with `reason` (no patient identifier in it)."""
    return StudyOutcome(StudyReport(
        study_uid=study.study_uid, status=IngestStatus.FAILED, stage=stage,
        n_series=len(study.series), n_files=study.file_count, modality=study.modality,
        device_group=study.device_group, reasons=reason))


def _crashed(study: StudyGroup, err: BaseException) -> StudyOutcome:
    return failed_outcome(study, f"the worker process died while ingesting this study "
                                 f"({type(err).__name__}); a decoder may have crashed on its "
                                 f"pixel data")


def _result(future: Future, study: StudyGroup) -> StudyOutcome:
    try:
        return future.result()
    except BrokenExecutor:
        raise
    except Exception as err:  # noqa: BLE001 - e.g. a result that does not unpickle
        if is_environmental(err):  # a full disk is no study's outcome: stop the stream
            raise
        LOGGER.error("Ingest of study %s raised %s.", study.study_uid, type(err).__name__)
        return failed_outcome(study, f"internal error while ingesting ({type(err).__name__})")


def _part_result(future: Future, study: StudyGroup) -> dict[str, np.ndarray] | None:
    try:
        return future.result()
    except BrokenExecutor:
        raise
    except Exception as err:  # noqa: BLE001 - e.g. a result that does not unpickle
        LOGGER.warning("Decoding part of study %s raised %s; it is loaded whole instead.",
                       study.study_uid, type(err).__name__)
        return None  # as a part that failed to decode


def _isolated(study: StudyGroup, config: IngestConfig, cache_root: Path,
              background: bool, keep_arrays: bool) -> StudyOutcome:
    """`study` ingested alone in a fresh worker, after a worker died on a batch holding it.

    If that worker dies too, the study is failed only when a worker can still run a task
    with no study (`check_workers`): where even that dies, the machine is failing (memory
    limits, a broken install), and no study is written down for it.
    """
    with _process_pool(1, background) as pool:
        try:
            return _result(pool.submit(ingest_study, study, config, cache_root,
                                       keep_array=keep_arrays), study)
        except BrokenExecutor as err:
            crash = err
    check_workers(background)
    return _crashed(study, crash)


def _alive() -> int:
    """The task `check_workers` gives a worker: nothing to do with any study."""
    return os.getpid()


def check_workers(background: bool = False, timeout: float = 120.0) -> None:
    """Raise `EnvironmentalError` unless a fresh ingest worker can start and run a task that
    touches no study (`_alive`), within `timeout` seconds."""
    pool = _process_pool(1, background)
    try:
        pool.submit(_alive).result(timeout=timeout)
    except Exception as err:  # noqa: BLE001 - whatever stopped it, the worker is not usable
        # A worker hung in its start would block a waiting shutdown (and the interpreter's
        # exit): end it first. The pool has no public way to (before Python 3.14).
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise EnvironmentalError(
            f"ingest worker processes die or hang even on a task that reads no study "
            f"({type(err).__name__}): the machine is failing (memory limit, process limit "
            f"or a broken installation), not a study") from err
    pool.shutdown(wait=True)


def _inline(studies: Iterable[StudyGroup], config: IngestConfig, cache_root: Path,
            keep_arrays: bool) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
    controller = None
    for study in studies:
        # Limited per study, not around the whole stream: the caller computes between two
        # studies (`triage run`'s inference) with its own thread counts.
        if controller is None:  # listed once the first study is pulled
            controller = _blas_controller()
        limiter = controller.limit(limits=1, user_api="blas")
        try:
            outcome = ingest_study(study, config, cache_root, keep_array=keep_arrays)
        except Exception as err:  # noqa: BLE001 - ingest_study should not raise; be safe
            if is_environmental(err):
                raise
            LOGGER.error("Ingest of study %s raised %s.", study.study_uid, type(err).__name__)
            outcome = failed_outcome(study, f"internal error while ingesting "
                                            f"({type(err).__name__})")
        finally:
            limiter.restore_original_limits()
        yield study, outcome


def _plan_parts(studies: Sequence[StudyGroup], config: IngestConfig, cache_root: Path,
                workers: int) -> dict[int, list[list[str]]]:
    """The studies to decode in parts, by index in `studies`, with each part's files.

    Costs come from the chosen series' headers; a study with nothing to decode (no series
    chosen, volume already cached) costs nothing and is never split.
    """
    series = []
    for study in studies:
        try:
            chosen = series_to_load(study, config, cache_root)
        except Exception:  # noqa: BLE001 - ingest_study reports it; the study is not split
            chosen = None
        series.append(chosen)
    records = [list(s.instances) if s is not None else [] for s in series]
    if not forkserver_available():  # workers fork after this: import the decoders here
        codecs.preload({r.transfer_syntax for rs in records for r in rs if r.transfer_syntax})
    parts: dict[int, list[list[str]]] = {}
    for job in plan_series(records, workers):
        if job.parts > 1:
            paths = [str(r.path) for r in records[job.series][job.start:job.stop]]
            parts.setdefault(job.series, []).append(paths)
    for index, files in parts.items():
        LOGGER.debug("Decoding series %s of study %s in %d parts across the workers.",
                     series[index].series_uid, studies[index].study_uid, len(files))
    return parts


def _jobs(split: dict[int, list[list[str]]], index: int) -> int:
    """How many jobs study `index` starts with: one per part, or its one ingest."""
    return len(split[index]) if index in split else 1


def _lazy(studies: Iterator[StudyGroup], config: IngestConfig, cache_root: Path,
          workers: int, background: bool,
          keep_arrays: bool) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
    """`stream_ingest` over an iterator: a study is pulled whenever the window has room.

    No series is split in parts (that plan needs every study up front). A study whose
    worker dies is retried alone, as in `stream_ingest`; the pool is then made anew.
    """
    window, exhausted = 2 * workers, False
    while True:
        pool = _process_pool(workers, background)
        running: dict[Future, StudyGroup] = {}
        orphans: list[StudyGroup] = []  # studies the dead pool may have been on
        try:
            while True:
                while not exhausted and len(running) < window:
                    study = next(studies, None)
                    if study is None:
                        exhausted = True
                        break
                    try:
                        future = pool.submit(ingest_study, study, config, cache_root,
                                             keep_array=keep_arrays)
                    except BrokenExecutor:
                        orphans.append(study)
                        raise
                    running[future] = study
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    study = running.pop(future)
                    try:
                        result = _result(future, study)
                    except BrokenExecutor:
                        orphans.append(study)
                        continue
                    yield study, result
                if orphans:
                    break
        except BrokenExecutor:
            pass
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for study in [*orphans, *running.values()]:
            LOGGER.warning("A worker died; retrying study %s in its own process.",
                           study.study_uid)
            yield study, _isolated(study, config, cache_root, background, keep_arrays)
        if exhausted:
            return


def stream_ingest(studies: Sequence[StudyGroup] | Iterator[StudyGroup],
                  config: IngestConfig, cache_root: Path | str, *, workers: int = 1,
                  background: bool = False, keep_arrays: bool = False
                  ) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
    """Ingest `studies`, yielding ``(study, outcome)`` in completion order.

    Args:
        studies: the studies to ingest, in the order to submit them (each is yielded
            exactly once); an iterator (a producer staging studies as it goes) is pulled
            whenever the pool has room, without splitting any series in parts.
        config: selection, load and preprocess settings.
        cache_root: the volume cache folder.
        workers: worker processes; 1 ingests inline in the calling process.
        background: run the workers at the lowest CPU priority
            (`lower_priority`), for a caller that computes beside them
            (`triage run`'s inference) and should have the cores first.
        keep_arrays: send each volume made now back with its outcome
            (``StudyOutcome.array``) besides caching it; at most ``2 * workers`` are in
            flight.

    Yields:
        ``(study, outcome)`` for each study, as each finishes.
    """
    cache_root = Path(cache_root)
    if not isinstance(studies, Sequence):
        if workers <= 1:
            yield from _inline(studies, config, cache_root, keep_arrays)
        else:
            yield from _lazy(studies, config, cache_root, workers, background, keep_arrays)
        return
    split = _plan_parts(studies, config, cache_root, workers) if workers > 1 else {}
    if workers <= 1 or len(studies) <= 1 and not split:
        yield from _inline(studies, config, cache_root, keep_arrays)
        return
    pending = list(reversed(range(len(studies))))  # pop() takes them in the given order
    window = 2 * workers
    while pending:
        pool = _process_pool(workers, background)
        held: dict[int, None] = {}  # studies taken from `pending` and not yet yielded
        # A running job: (study index, part number, or None for the study's ingest).
        running: dict[Future, tuple[int, int | None]] = {}
        received: dict[int, dict[int, dict[str, np.ndarray] | None]] = {}
        try:
            while pending or running:
                # A split study's parts go in together, once they all fit in the window.
                while pending and len(running) + _jobs(split, pending[-1]) <= window:
                    index = pending.pop()
                    held[index] = None
                    if index in split:
                        received[index] = {}
                        for part, paths in enumerate(split[index]):
                            future = pool.submit(decode_part, paths, config.load)
                            running[future] = (index, part)
                    else:
                        future = pool.submit(ingest_study, studies[index], config, cache_root,
                                             keep_array=keep_arrays)
                        running[future] = (index, None)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    index, part = running.pop(future)
                    study = studies[index]
                    try:
                        result = (_result(future, study) if part is None
                                  else _part_result(future, study))
                    except BrokenExecutor:
                        broken = True
                        continue
                    if part is None:
                        del held[index]
                        yield study, result
                        continue
                    received[index][part] = result
                    if len(received[index]) == len(split[index]) and not broken:
                        # All parts are back: ingest from them, or whole if one failed, so
                        # that its error is the one an unsplit ingest reports.
                        decoded = merge_parts(received.pop(index).values())
                        future = pool.submit(ingest_study, study, config, cache_root, decoded,
                                             keep_array=keep_arrays)
                        running[future] = (index, None)
                if broken:
                    break
        except BrokenExecutor:
            pass
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for index in held:  # the studies the dead worker may have been on
            study = studies[index]
            LOGGER.warning("A worker died; retrying study %s in its own process.",
                           study.study_uid)
            yield study, _isolated(study, config, cache_root, background, keep_arrays)
