"""Largest-first scheduling orders studies by expected decode work, and nothing else."""

from __future__ import annotations

from pathlib import Path

from triage.dicom.grouping import StudyGroup
from triage.dicom.index import InstanceRecord, ScanErrorCode
from triage.ingest.schedule import decode_cost, largest_first, studies_largest_first

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
