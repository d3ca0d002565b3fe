"""Scanning an export: every file indexed or accounted for, bad files with exact reasons."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom import config
from pydicom.uid import JPEG2000Lossless

from tests.dicom.factories import (
    ACME,
    AXIAL,
    build_dicomdir_export,
    build_export,
    enhanced_ct_dataset,
    save,
    study_header,
    truncate,
    write_ct_series,
)
from triage.dicom.scan.header import read_instance
from triage.dicom.scan.index import (
    IDENTIFIER_FIELDS,
    INDEX_COLUMNS,
    IgnoreReason,
    InstanceRecord,
    ScanErrorCode,
    ScanResult,
)
from triage.dicom.scan.scan import scan_export
from triage.errors import DicomError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534


@pytest.fixture(autouse=True, scope="module")
def strict_reading():
    """Parsing must not lean on pydicom's lenient WARN mode (highdicom's conftest habit)."""
    before = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    yield
    config.settings.reading_validation_mode = before


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return build_export(tmp_path_factory.mktemp("scan") / "export")


@pytest.fixture(scope="module")
def scan(export) -> ScanResult:
    return scan_export(export.root, workers=1)


def record(scan: ScanResult, path: Path) -> InstanceRecord:
    (found,) = [r for r in scan.records if r.path == path]
    return found


def test_every_dicom_file_has_one_record_in_path_order(export, scan):
    on_disk = {Path(folder, name) for folder, _, names in os.walk(export.root) for name in names}
    on_disk -= {export.root / "README.txt", export.root / "preview.jpg"}
    paths = [r.path for r in scan.records]
    assert paths == sorted(paths, key=str)
    assert set(paths) == on_disk | {export.paths["loop"]}


def test_records_hold_each_repeated_value_once(scan):
    """A scan keeps one record per file for a whole run: the records have no instance
    dict, and the values every file of a series repeats are one string, not one each."""
    by_series: dict[str, list[InstanceRecord]] = {}
    for r in scan.records:
        if r.series_uid and r.error is None:
            by_series.setdefault(r.series_uid, []).append(r)
    first, second = max(by_series.values(), key=len)[:2]
    assert not hasattr(first, "__dict__")
    for name in ("study_uid", "series_uid", "modality", "manufacturer", "device_group",
                 "transfer_syntax"):
        assert getattr(first, name) is getattr(second, name), name
    assert first.sop_instance_uid != second.sop_instance_uid


def test_non_dicom_files_are_ignored_and_counted_not_errors(export, scan):
    assert scan.non_dicom == (export.root / "README.txt", export.root / "preview.jpg")
    assert {i.reason for i in scan.ignored} == {IgnoreReason.NOT_DICOM}


@pytest.mark.parametrize(("key", "code", "message"), [
    ("empty", ScanErrorCode.ZERO_LENGTH, "zero-length file"),
    ("garbage", ScanErrorCode.CORRUPT,
     "corrupt: no File Meta Information after the 'DICM' prefix"),
    ("truncated", ScanErrorCode.TRUNCATED,
     "truncated: pixel data needs 2048 bytes but only 1548 remain"),
    ("loop", ScanErrorCode.SYMLINK_LOOP, "symlink loop: points back to ancestor folder '.'"),
])
def test_bad_files_get_a_specific_reason(export, scan, key, code, message):
    bad = record(scan, export.paths[key])
    assert (bad.error_code, bad.error) == (code, message)


def test_truncated_file_keeps_the_uids_read_before_the_cut(export, scan):
    bad = record(scan, export.paths["truncated"])
    assert bad.study_uid == export.uids["study_a"]
    assert bad.series_uid == export.uids["thin"]
    assert bad.has_pixel_data


def test_missing_pixel_data_and_missing_geometry_are_not_scan_errors(export, scan):
    no_pixels = record(scan, export.paths["nopix"])
    assert (no_pixels.error, no_pixels.has_pixel_data, no_pixels.rows) == (None, False, 32)
    no_geometry = record(scan, export.paths["no_geometry"])
    assert no_geometry.ok and no_geometry.has_pixel_data
    assert (no_geometry.image_position, no_geometry.image_orientation) == (None, None)


def test_overlong_decimal_strings_are_parsed_and_noted(export, scan):
    overlong = record(scan, export.paths["overlong"])
    assert overlong.image_position == (-16.0, -16.0, 2.0)
    assert overlong.malformed == (
        "ImagePositionPatient: DS value longer than 16 characters ('-16.000000000000000000')",)


def test_junk_decimal_string_becomes_none_and_is_noted(export, scan):
    junk = record(scan, export.paths["junk_spacing"])
    assert junk.ok and junk.pixel_spacing is None
    assert "PixelSpacing: not a number ('abcde')" in junk.malformed


def test_header_fields_of_a_good_slice(export, scan):
    good = record(scan, export.root / "study_a" / "thin" / "IM0003.dcm")
    assert good.ok and good.malformed == ()
    assert (good.modality, good.device_group) == ("CT", "acme-medical-ct-one")
    assert good.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")
    assert (good.rows, good.columns, good.number_of_frames, good.frames) == (32, 32, None, 1)
    assert good.image_position == (-16.0, -16.0, 3.0)
    assert good.image_orientation == AXIAL
    assert (good.pixel_spacing, good.slice_thickness) == ((1.0, 1.0), 1.0)
    assert (good.instance_number, good.series_number) == (4, 2)
    assert good.transfer_syntax == "1.2.840.10008.1.2.1"
    assert (good.patient_id, good.accession_number, good.study_date) == (
        "PID-a", "ACC-a", "20240101")


def test_files_without_suffix_are_indexed(export, scan):
    axial = [r for r in scan.records if r.series_uid == export.uids["axial"]]
    assert len(axial) == 21 and all(r.ok and r.path.suffix == "" for r in axial)


def test_to_frame_has_one_row_per_record_and_string_codes(scan):
    frame = scan.to_frame()
    assert list(frame.columns) == list(INDEX_COLUMNS)
    assert set(IDENTIFIER_FIELDS) <= set(frame.columns)
    assert len(frame) == len(scan.records)
    assert set(frame["error_code"].dropna()) == {"zero-length", "corrupt", "truncated",
                                                 "symlink-loop"}


def test_parallel_scan_equals_serial_scan(export, scan):
    parallel = scan_export(export.root, workers=2, chunk_size=8, min_files_per_worker=1)
    assert parallel == scan


def test_a_small_export_is_scanned_inline(export, scan, monkeypatch):
    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for a small export")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert scan_export(export.root, workers=2, chunk_size=8) == scan


def test_symlinked_files_and_folders_inside_the_export_are_followed_once(tmp_path):
    root = tmp_path / "export"
    inside = root / "data"
    paths = write_ct_series(inside, study_header("link"), ACME, "link", slices=2)
    (root / "linked").symlink_to(inside, target_is_directory=True)
    (root / "same").symlink_to(inside, target_is_directory=True)
    (root / "file-link.dcm").symlink_to(paths[0])
    (root / "broken.dcm").symlink_to(root / "nowhere.dcm")
    (root / "self").symlink_to(root / "self")
    result = scan_export(root, workers=1)
    errors = {r.path.name: (r.error_code, r.error) for r in result.errors}
    assert errors == {
        "broken.dcm": (ScanErrorCode.BROKEN_SYMLINK, "broken symlink: target does not exist"),
        "self": (ScanErrorCode.SYMLINK_LOOP, "symlink loop"),
    }
    readable = [r.path.relative_to(root).as_posix() for r in result.records if r.ok]
    assert readable == ["data/IM0001.dcm", "file-link.dcm"]
    assert sorted((i.path.name, i.reason) for i in result.ignored) == [
        ("IM0000.dcm", IgnoreReason.DUPLICATE), ("linked", IgnoreReason.DUPLICATE),
        ("same", IgnoreReason.DUPLICATE)]
    assert result.links_outside_export == ()


def test_links_leaving_the_export_are_not_followed(tmp_path):
    root, outside = tmp_path / "export", tmp_path / "host"
    paths = write_ct_series(outside, study_header("host"), ACME, "host", slices=2)
    write_ct_series(root / "own", study_header("own"), ACME, "own", slices=2)
    (root / "usr-share").symlink_to(outside, target_is_directory=True)
    (root / "own" / "file-link.dcm").symlink_to(paths[0])
    (root / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "own" / "up").symlink_to(tmp_path, target_is_directory=True)
    result = scan_export(root, workers=1)
    assert {r.path.relative_to(root).as_posix() for r in result.records} == {
        "own/IM0000.dcm", "own/IM0001.dcm"}
    assert sorted(p.relative_to(root).as_posix() for p in result.links_outside_export) == [
        "gone.dcm", "own/file-link.dcm", "own/up", "usr-share"]
    assert not result.errors


def _scan_unprivileged(root: Path, conn) -> None:
    try:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        conn.send(scan_export(root, workers=1))
    except BaseException as err:  # report anything to the parent, which would wait forever
        conn.send(err)


def scan_without_root(root: Path) -> ScanResult:
    """Scan as an unprivileged user: as root, from a forked child that drops to `nobody`.

    chmod 000 does not stop root, so the permission tests would prove nothing; the forked
    child keeps the loaded interpreter and modules and meets real `PermissionError`s.
    """
    if not AS_ROOT:
        return scan_export(root, workers=1)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_scan_unprivileged, args=(root, sender))
    child.start()
    ready = receiver.poll(60)
    outcome = receiver.recv() if ready else TimeoutError("unprivileged scan took > 60 s")
    child.join(10)
    if isinstance(outcome, PermissionError):
        pytest.skip(f"cannot drop root privileges here: {outcome}")
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@pytest.fixture
def shared_tmp():
    """A temporary folder `nobody` can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="triage-scan-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_folder_and_file_are_reported(shared_tmp):
    root = shared_tmp / "export"
    paths = write_ct_series(root / "series", study_header("perm"), ACME, "perm", slices=2)
    locked = root / "locked"
    write_ct_series(locked, study_header("perm"), ACME, "locked", slices=1)
    for folder in (root, root / "series"):
        folder.chmod(0o755)
    paths[1].chmod(0o644)
    locked.chmod(0)
    paths[0].chmod(0)
    try:
        result = scan_without_root(root)
    finally:
        locked.chmod(0o755)
    errors = {r.path: (r.error_code, r.error) for r in result.errors}
    assert errors == {
        locked: (ScanErrorCode.UNREADABLE_DIRECTORY, "permission denied: cannot list folder"),
        paths[0]: (ScanErrorCode.PERMISSION_DENIED, "permission denied"),
    }
    assert [r.path for r in result.records if r.ok] == [paths[1]]


def test_dicomdir_present_or_absent_gives_the_same_index(tmp_path):
    with_dir = build_dicomdir_export(tmp_path / "with").root
    without = tmp_path / "without"
    shutil.copytree(with_dir, without)
    (without / "DICOMDIR").unlink()
    first, second = scan_export(with_dir, workers=1), scan_export(without, workers=1)
    assert first.dicomdirs == (with_dir / "DICOMDIR",) and second.dicomdirs == ()
    assert len(first.records) == 5 and first.notes == ()

    def relative(result: ScanResult) -> list[InstanceRecord]:
        return [replace(r, path=r.path.relative_to(result.root)) for r in result.records]

    assert relative(first) == relative(second)


def test_dicomdir_entries_missing_on_disk_are_reported_under_their_study(tmp_path):
    export = build_dicomdir_export(tmp_path / "dd")
    victim = sorted(p for p in export.root.rglob("IM*") if p.is_file())[-1]
    victim.unlink()
    result = scan_export(export.root, workers=1)
    (missing,) = result.errors
    assert (missing.path, missing.error_code) == (victim, ScanErrorCode.MISSING_FILE)
    assert missing.error == "listed in DICOMDIR but missing on disk"
    assert (missing.study_uid, missing.series_uid) == (export.uids["study"], export.uids["series"])
    assert missing.sop_instance_uid
    assert result.notes == ("DICOMDIR: lists 1 file(s) missing on disk",)


def test_an_unreadable_dicomdir_is_a_note_not_a_failure(tmp_path):
    export = build_dicomdir_export(tmp_path / "dd")
    export.paths["dicomdir"].write_bytes(b"not a dicomdir")
    result = scan_export(export.root, workers=1)
    assert len(result.records) == 5 and result.errors == ()
    assert len(result.notes) == 1 and "not a readable DICOMDIR" in result.notes[0]


def test_truncated_encapsulated_pixel_data(tmp_path):
    paths = write_ct_series(tmp_path, study_header("j2k"), ACME, "j2k", slices=2,
                            transfer_syntax=JPEG2000Lossless)
    truncate(paths[1], 100)
    intact, cut = read_instance(paths[0]), read_instance(paths[1])
    assert intact.ok and intact.has_pixel_data
    assert intact.transfer_syntax == JPEG2000Lossless
    assert cut.error_code is ScanErrorCode.TRUNCATED
    assert cut.error.startswith("truncated: pixel data item 1 needs ")


@pytest.mark.parametrize(("keep", "message"), [
    (-4, "truncated: the file ends inside a data element header"),
    (2, "truncated: header element (0008,103E) needs 16 bytes but only 2 remain"),
])
def test_header_cut_short_is_truncated(tmp_path, keep, message):
    (path,) = write_ct_series(tmp_path, study_header("cut"), ACME, "cut", slices=1)
    value_start = pydicom.dcmread(path)["SeriesDescription"].file_tell  # a 16-byte value
    truncate(path, path.stat().st_size - value_start - keep)
    cut = read_instance(path)
    assert (cut.error_code, cut.error) == (ScanErrorCode.TRUNCATED, message)
    assert cut.sop_instance_uid and cut.study_uid is None


def test_enhanced_multiframe_geometry_comes_from_functional_groups(tmp_path):
    path = save(enhanced_ct_dataset(study_header("mf"), frames=4), tmp_path / "mf.dcm")
    multi = read_instance(path)
    assert multi.ok and (multi.number_of_frames, multi.frames) == (4, 4)
    assert multi.image_orientation == AXIAL and multi.image_position == (0.0, 0.0, 0.0)
    assert (multi.pixel_spacing, multi.slice_thickness) == ((0.5, 0.5), 2.0)


def test_dataset_without_preamble_is_read_and_binary_junk_is_not(tmp_path):
    (path,) = write_ct_series(tmp_path, study_header("raw"), ACME, "raw", slices=1)
    raw = tmp_path / "raw"
    raw.write_bytes(path.read_bytes()[132:])
    assert read_instance(raw).ok
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x08\x00" + bytes(200))
    assert read_instance(junk) is None


def test_missing_export_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DicomError, match="the export folder does not exist or is not a folder"):
        scan_export(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"workers and chunk_size must be >= 1, got 0 and 64\."):
        scan_export(tmp_path, workers=0)
