"""Hostile files: compression bombs, oversized headers, broken DICOMDIRs, links out."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless

from tests.dicom.factories import (
    ACME,
    build_dicomdir_export,
    ct_datasets,
    study_header,
    write_ct_series,
)
from triage.dicom.limits import ResourceLimitError, ResourceLimits
from triage.dicom.scan.dicomdir import read_dicomdir
from triage.dicom.scan.header import read_instance
from triage.dicom.scan.index import ScanErrorCode
from triage.dicom.scan.scan import scan_export
from triage.dicom.volume.loader import LoadOptions, load_series
from triage.errors import DicomError

MIB = 1 << 20


def write_deflated_bomb(path: Path, inflated: int = 8 * MIB) -> Path:
    """A deflated CT slice whose private OB element of zeros inflates to `inflated` bytes."""
    ds = ct_datasets(study_header("bomb"), ACME, "bomb", slices=1)[0]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x00091010, "OB", bytes(inflated))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_deflate_bomb_is_refused_by_the_scan_without_inflating_it(tmp_path):
    bomb = write_deflated_bomb(tmp_path / "export" / "bomb.dcm")
    assert bomb.stat().st_size < 64 * 1024
    record = read_instance(bomb, max_inflated_bytes=MIB)
    assert record.error_code is ScanErrorCode.OVER_LIMIT
    assert record.error.startswith("over limit: The deflated data set inflates to more than "
                                   "limits.max_inflated_bytes=1,048,576 bytes")
    scan = scan_export(tmp_path / "export", workers=1,
                       limits=ResourceLimits(max_inflated_bytes=MIB))
    assert [r.error_code for r in scan.records] == [ScanErrorCode.OVER_LIMIT]
    assert read_instance(bomb).ok  # under the default cap it is an ordinary file


def test_the_loader_refuses_a_deflate_bomb_too(tmp_path):
    bomb = write_deflated_bomb(tmp_path / "bomb.dcm")
    options = LoadOptions(limits=ResourceLimits(max_inflated_bytes=MIB))
    with pytest.raises(ResourceLimitError, match=r"bomb\.dcm: The deflated data set inflates"):
        load_series([bomb, bomb], options=options)


def test_a_header_declaring_a_huge_matrix_is_refused_before_decoding(tmp_path):
    def huge(ds, _):
        ds.Rows = ds.Columns = 65535

    paths = write_ct_series(tmp_path, study_header("huge"), ACME, "huge", slices=3,
                            transfer_syntax=JPEG2000Lossless, edit=huge)
    with pytest.raises(ResourceLimitError, match=r"declares 65535x65535 pixels per frame "
                                                 r"\(4,294,836,225\), more than "
                                                 r"limits.max_frame_pixels=4,194,304"):
        load_series(paths)


def test_a_series_over_the_voxel_cap_is_refused_before_stacking(tmp_path):
    paths = write_ct_series(tmp_path, study_header("vox"), ACME, "vox", slices=4)
    options = LoadOptions(limits=ResourceLimits(max_volume_voxels=3 * 32 * 32))
    with pytest.raises(ResourceLimitError, match=r"4 slices holding 4,096 voxels .* more than "
                                                 r"limits.max_volume_voxels=3,072"):
        load_series(paths, options=options)
    assert load_series(paths).shape == (32, 32, 4)


def test_a_multiframe_header_with_too_many_frames_is_refused(tmp_path):
    (path,) = write_ct_series(tmp_path, study_header("mf"), ACME, "mf", slices=1)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 5000
    ds.save_as(path)
    with pytest.raises(ResourceLimitError, match="declares 5,000 frames, more than "
                                                 "limits.max_frames=4,096"):
        load_series([path, path])


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "big"])
def test_limits_are_validated(value):
    with pytest.raises(ValueError, match="ResourceLimits.max_frames must be a positive integer"):
        ResourceLimits(max_frames=value)


def _mutate_dicomdir(path: Path, edit) -> None:
    ds = pydicom.dcmread(path)
    edit(ds.DirectoryRecordSequence[0])
    ds.save_as(path)


def _list_offset(record):
    record.OffsetOfReferencedLowerLevelDirectoryEntity = [
        record.OffsetOfReferencedLowerLevelDirectoryEntity, 5]


def _text_offset(record):
    record[0x00041400].VR = "UN"
    record[0x00041400].value = b"\x01\x02"


def _file_id_number(record):
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.ReferencedFileID = ["..", "..", "etc", "passwd"]


@pytest.mark.parametrize("edit", [_list_offset, _text_offset])
def test_a_malformed_record_offset_is_a_note_not_a_crash(tmp_path, edit):
    export = build_dicomdir_export(tmp_path / "dd")
    _mutate_dicomdir(export.paths["dicomdir"], edit)
    with pytest.raises(DicomError, match="not a readable DICOMDIR"):
        read_dicomdir(export.paths["dicomdir"])
    result = scan_export(export.root, workers=1)
    assert len(result.records) == 5 and result.errors == ()
    (note,) = result.notes
    assert note.startswith("DICOMDIR: not a readable DICOMDIR (") and str(tmp_path) not in note


def test_dicomdir_references_outside_the_export_are_ignored(tmp_path):
    export = build_dicomdir_export(tmp_path / "dd")
    _mutate_dicomdir(export.paths["dicomdir"], _file_id_number)
    result = scan_export(export.root, workers=1)
    assert len(result.records) == 5 and result.errors == ()
    assert result.notes == ("DICOMDIR: references 1 file(s) outside the export (ignored)",)
