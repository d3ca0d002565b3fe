"""Largest-first scheduling over worker processes; splitting a long series (no effect on results).

A process pool handed studies in export order can end with one worker decoding a long
JPEG 2000 series while the others idle. Submitting the studies in decreasing order of
expected decode work (the longest-processing-time-first rule) bounds that tail. The cost
is a rough model from the header index - pixels times a per-syntax factor - measured on
this machine with the loader as it is now (read, decode, rescale and assembly per pixel):
about 4 ns per native pixel, 8 for RLE, 150 for JPEG 2000 (JPEG-LS is taken as alike).
It only orders work; every study is still processed, and reports are sorted by study UID
when written.

Largest-first still leaves a tail when the expensive series do not divide evenly among
the workers (three JPEG 2000 series on two workers: one worker decodes two of them while
the other runs out of work). `plan_loads` therefore simulates the schedule and splits
such a series' files into one part per worker, each decoded in its own process and the
volume assembled from the parts, when the simulation says the pool then finishes sooner
by more than the split costs. `triage.ingest.stream` (behind `triage ingest` and `triage
run`) splits the chosen series of such a study; `triage.ingest.parallel_load` does the
same for load-only batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from triage.dicom.scan.grouping import StudyGroup
from triage.dicom.scan.index import InstanceRecord

_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_RLE = "1.2.840.10008.1.2.5"
#: Relative decode cost per pixel: native 1, RLE 2, other compressed syntaxes 40.
_NATIVE_COST, _RLE_COST, _COMPRESSED_COST = 1.0, 2.0, 40.0

T = TypeVar("T")


def _factor(syntax: str | None) -> float:
    syntax = syntax or ""
    return (_NATIVE_COST if syntax in _NATIVE else _RLE_COST if syntax == _RLE
            else _COMPRESSED_COST)


def decode_cost(records: Iterable[InstanceRecord]) -> float:
    """Expected relative decode work of `records` (readable files with pixel data)."""
    total = 0.0
    for record in records:
        if not record.ok or not record.has_pixel_data:
            continue
        pixels = (record.rows or 0) * (record.columns or 0) * record.frames
        total += pixels * _factor(record.transfer_syntax)
    return total


def largest_first(items: Sequence[T], costs: Sequence[float]) -> list[T]:
    """`items` by decreasing cost; ties keep their order (the sort is stable)."""
    order = sorted(range(len(items)), key=lambda i: -costs[i])
    return [items[i] for i in order]


def studies_largest_first(studies: Sequence[StudyGroup]) -> list[StudyGroup]:
    """Studies by decreasing `decode_cost` of all their records."""
    return largest_first(studies, [decode_cost(r for s in study.series.values() for r in s)
                                   for study in studies])


@dataclass(frozen=True)
class LoadJob:
    """One task for a worker: a whole series, or one part of its files to decode.

    Attributes:
        series: index of the series in the caller's list.
        part: which part (0 for a whole series).
        parts: how many parts the series was split into (1: loaded whole by one worker).
        start, stop: the slice of the series' files this job covers.
        cost: expected work, in `decode_cost` units.
    """

    series: int
    part: int
    parts: int
    start: int
    stop: int
    cost: float


def splittable(records: Sequence[InstanceRecord], workers: int) -> bool:
    """True when the series is worth decoding in parts: compressed single-frame files,
    at least two per worker (native and RLE decoding is too cheap to gain from it)."""
    return (workers > 1 and len(records) >= 2 * workers
            and all(r.frames == 1 and _factor(r.transfer_syntax) == _COMPRESSED_COST
                    for r in records))


def split_overhead(records: Sequence[InstanceRecord]) -> float:
    """Extra work of a split series: its stored values travel between processes and its
    headers are read twice; modelled as two native passes over its pixels."""
    return 2 * _NATIVE_COST * sum((r.rows or 0) * (r.columns or 0) * r.frames
                                  for r in records)


def makespan(costs: Iterable[float], workers: int) -> float:
    """When the last worker finishes if each job, in the given order, goes to the first
    worker free (what a process pool does with jobs submitted in that order)."""
    return _simulate([(cost, 0) for cost in costs], workers)[0]


def _simulate(jobs: Sequence[tuple[float, int]], workers: int) -> tuple[float, int | None]:
    """`makespan` of ``(cost, series)`` jobs, and the series of the job that ends last."""
    loads: list[tuple[float, int, int | None]] = [(0.0, w, None) for w in range(workers)]
    for cost, series in jobs:
        load, worker, _ = loads[0]
        heapq.heapreplace(loads, (load + cost, worker, series))
    load, _, series = max(loads)
    return load, series


def plan_loads(costs: Sequence[float], n_files: Sequence[int], can_split: Sequence[bool],
               overheads: Sequence[float], workers: int) -> list[LoadJob]:
    """Jobs for loading series in a pool of `workers`, largest first, a few split in parts.

    Starting from the largest-first order of whole series, the schedule is simulated
    (`makespan`); while the job that ends last is a whole series that may be split, it
    is split into `workers` parts of (nearly) equal file counts, as long as that makes the pool
    finish sooner by more than the split's overhead.

    Args:
        costs: expected work per series (`decode_cost`).
        n_files: files per series.
        can_split: per series, whether it may be split (`splittable`).
        overheads: per series, the extra work splitting adds (`split_overhead`).
        workers: pool size; 1 never splits.

    Returns:
        The jobs, in the order to submit them (largest first; the parts of one series
        next to each other).
    """
    parts = [1] * len(costs)

    def jobs_of(split: list[int]) -> list[tuple[float, int]]:
        jobs = [((costs[i] + (overheads[i] if split[i] > 1 else 0.0)) / split[i], i)
                for i in range(len(costs)) for _ in range(split[i])]
        return sorted(jobs, key=lambda job: -job[0])

    if workers > 1:
        best, last = _simulate(jobs_of(parts), workers)
        while last is not None and parts[last] == 1 and can_split[last] and costs[last] > 0:
            trial = parts.copy()
            trial[last] = workers
            finish, then_last = _simulate(jobs_of(trial), workers)
            if finish + overheads[last] >= best:
                break
            parts, best, last = trial, finish, then_last
    jobs = []
    for i in range(len(costs)):
        n, k_parts = n_files[i], min(parts[i], max(n_files[i], 1))
        cost = (costs[i] + (overheads[i] if k_parts > 1 else 0.0)) / k_parts
        # Parts differ by at most one file, and none is empty.
        jobs.extend(LoadJob(i, k, k_parts, k * n // k_parts, (k + 1) * n // k_parts, cost)
                    for k in range(k_parts))
    return sorted(jobs, key=lambda job: -job.cost)  # stable: parts stay together


def plan_series(series: Sequence[Sequence[InstanceRecord]], workers: int) -> list[LoadJob]:
    """`plan_loads` for the files of each series, costed from their scan records.

    Args:
        series: the files of each series (an empty list: nothing to decode, never split).
        workers: pool size.

    Returns:
        The jobs, as `plan_loads` returns them; ``job.series`` indexes `series`.
    """
    return plan_loads([decode_cost(s) for s in series], [len(s) for s in series],
                      [splittable(s, workers) for s in series],
                      [split_overhead(s) for s in series], workers)
