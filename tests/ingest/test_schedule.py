"""Largest-first scheduling by expected decode work; splitting the series left alone at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.dicom.scan.grouping import StudyGroup
from triage.dicom.scan.index import InstanceRecord, ScanErrorCode
from triage.ingest.schedule import (
    decode_cost,
    largest_first,
    makespan,
    plan_loads,
    split_overhead,
    splittable,
    studies_largest_first,
)

J2K, RLE, NATIVE = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1"


def _record(name: str, syntax: str, size: int = 256, **values) -> InstanceRecord:
    values.setdefault("has_pixel_data", True)
    return InstanceRecord(Path(name), rows=size, columns=size, transfer_syntax=syntax,
                          **values)


def test_cost_weighs_pixels_by_syntax_and_skips_unusable_files():
    native, rle, j2k = (decode_cost([_record("a", s)]) for s in (NATIVE, RLE, J2K))
    assert native < rle < j2k
    assert decode_cost([_record("a", NATIVE, number_of_frames=4)]) == 4 * native
    bad = _record("b", J2K, error="truncated", error_code=ScanErrorCode.TRUNCATED)
    assert decode_cost([bad, _record("c", NATIVE, has_pixel_data=False)]) == 0.0


def test_studies_go_largest_first_and_ties_keep_their_order():
    def study(uid: str, *records: InstanceRecord) -> StudyGroup:
        return StudyGroup(uid, {"s": records})

    small = study("1", _record("a", NATIVE, 64))
    j2k = study("2", _record("b", J2K, 192), _record("c", J2K, 192))
    native = study("3", _record("d", NATIVE), _record("e", NATIVE))
    twin = study("4", _record("f", NATIVE), _record("g", NATIVE))
    ordered = studies_largest_first([small, j2k, native, twin])
    assert [s.study_uid for s in ordered] == ["2", "3", "4", "1"]
    assert largest_first(["x", "y"], [1.0, 1.0]) == ["x", "y"]


def test_makespan_is_list_scheduling_in_the_given_order():
    assert makespan([3.0, 3.0, 3.0], 2) == 6.0
    assert makespan([3.0, 3.0, 1.5, 1.5], 2) == 4.5
    assert makespan([], 2) == 0.0


def _plan(costs, workers, can_split=None, files=8):
    n = len(costs)
    return plan_loads(costs, [files] * n, can_split or [True] * n, [c / 20 for c in costs],
                      workers)


def test_the_series_left_alone_at_the_end_is_split_across_the_workers():
    jobs = _plan([10.0, 10.0, 10.0, 1.0, 1.0], 2)
    split = [job for job in jobs if job.parts > 1]
    assert [(j.series, j.part, j.start, j.stop) for j in split] == [(2, 0, 0, 4), (2, 1, 4, 8)]
    assert [j.series for j in jobs] == [0, 1, 2, 2, 3, 4]  # largest first, parts together
    assert split[0].cost == pytest.approx((10.0 + 0.5) / 2)


def test_nothing_is_split_with_one_worker_or_when_it_does_not_pay():
    assert all(job.parts == 1 for job in _plan([10.0, 10.0, 10.0], 1))
    assert all(job.parts == 1 for job in _plan([10.0, 10.0, 1.0, 1.0], 2))  # already even
    assert all(job.parts == 1 for job in _plan([10.0, 10.0, 10.0], 2, [False] * 3))


def test_a_single_long_series_is_split_and_parts_cover_every_file_once():
    (first, second, third) = plan_loads([30.0], [7], [True], [1.0], 3)
    assert [(j.start, j.stop) for j in (first, second, third)] == [(0, 2), (2, 4), (4, 7)]
    assert {j.parts for j in (first, second, third)} == {3}
    for workers in range(2, 9):
        for files in range(2 * workers, 4 * workers):
            jobs = plan_loads([100.0], [files], [True], [1.0], workers)
            assert len(jobs) == workers == jobs[0].parts
            assert [j.start for j in jobs[1:]] == [j.stop for j in jobs[:-1]]
            assert (jobs[0].start, jobs[-1].stop) == (0, files)


def test_only_compressed_single_frame_series_with_enough_files_are_splittable():
    j2k = [_record(f"{i}", J2K, 192) for i in range(8)]
    assert splittable(j2k, 2)
    assert not splittable(j2k, 1)
    assert not splittable(j2k[:3], 2)
    assert not splittable([_record(f"{i}", NATIVE) for i in range(8)], 2)
    assert not splittable([*j2k, _record("m", J2K, 192, number_of_frames=4)], 2)
    assert split_overhead(j2k) == 2 * 8 * 192 * 192
