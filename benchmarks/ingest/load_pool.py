"""`load_many`: the load-to-volume benchmark's pool (`triage-load` with workers).

Loads every series in worker processes, largest first, and hands each volume (or the
`TriageError` its load raised) to a picklable ``finish`` function in the process that built
it, so that only ``finish``'s small result travels back. A long compressed series that would
leave a worker idle at the end is decoded in parts across the workers with
`triage.ingest.parallel_load`'s `decode_part` and `merge_parts`, on the plan of
`triage.ingest.schedule.plan_series`: what `triage ingest` does (`triage.ingest.stream`),
without preprocessing and caching. A worker that dies breaks the pool; `load_many` then
raises `concurrent.futures.process.BrokenProcessPool`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from triage.dicom.pixels import codecs
from triage.dicom.scan.index import InstanceRecord
from triage.dicom.volume.loader import LoadOptions, load_series
from triage.dicom.volume.model import Volume
from triage.errors import TriageError
from triage.ingest.parallel_load import decode_part, merge_parts
from triage.ingest.schedule import plan_series, splittable

if TYPE_CHECKING:
    from concurrent.futures import Future

R = TypeVar("R")
Finish = Callable[[Volume | TriageError], R]


def _init_worker(parent: int | None = None) -> None:
    # One BLAS thread per worker, as `triage.ingest.stream` (not imported: it pulls in
    # the preprocessing stack, which loading does not need).
    from threadpoolctl import threadpool_limits

    from triage.ingest.lifeline import die_with_parent

    die_with_parent(parent)

    threadpool_limits(1, user_api="blas")


def _load(paths: Sequence[str], options: LoadOptions, finish: Finish,
          decoded: Mapping[str, np.ndarray] | None = None) -> R:
    try:
        volume: Volume | TriageError = load_series(paths, options=options, decoded=decoded)
    except TriageError as err:
        volume = err
    return finish(volume)


def load_many(series: Sequence[Sequence[InstanceRecord]], options: LoadOptions,
              finish: Finish, *, workers: int = 1) -> list[R]:
    """Load every series and return ``finish(volume or error)`` for each, in input order.

    Args:
        series: the files of each series, as scan records (a `SeriesRef`'s instances).
        options: the loader's options.
        finish: called once per series with its `Volume`, or the `TriageError` its load
            raised; must be picklable (a module-level function) when ``workers > 1``,
            and should return something small.
        workers: processes; 1 loads inline in the calling process.

    Raises:
        BrokenProcessPool: a worker process died.
    """
    paths = [[os.fspath(r.path) for r in records] for records in series]
    if workers <= 1 or len(series) <= 1 and not any(splittable(s, workers) for s in series):
        return [_load(p, options, finish) for p in paths]
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = plan_series(series, workers)
    # Workers fork after this: import the decoders once, here, for all of them.
    codecs.preload({r.transfer_syntax for s in series for r in s if r.transfer_syntax})
    results: dict[int, R] = {}
    parts: dict[int, dict[int, dict[str, np.ndarray] | None]] = {}
    with ProcessPoolExecutor(workers, initializer=_init_worker,
                             initargs=(os.getpid(),)) as pool:
        running: dict[Future, tuple[int, int, int]] = {}
        for job in jobs:
            if job.parts == 1:
                future = pool.submit(_load, paths[job.series], options, finish)
            else:
                future = pool.submit(decode_part, paths[job.series][job.start:job.stop],
                                     options)
            running[future] = (job.series, job.part, job.parts)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, part, n_parts = running.pop(future)
                if n_parts == 1:
                    results[index] = future.result()
                    continue
                received = parts.setdefault(index, {})
                received[part] = future.result()
                if len(received) < n_parts:
                    continue
                del parts[index]
                decoded = merge_parts(received.values())
                if decoded is None:  # load it whole instead
                    retry = pool.submit(_load, paths[index], options, finish)
                    running[retry] = (index, 0, 1)
                    continue
                results[index] = _load(paths[index], options, finish, decoded)
    return [results[i] for i in range(len(series))]
