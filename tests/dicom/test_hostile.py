"""Hostile files: compression bombs, oversized headers, broken DICOMDIRs, links out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from tests.dicom.factories import (
    ACME,
    build_dicomdir_export,
    ct_datasets,
    huge_matrix,
    j2k_declaring,
    scramble_last_fragment,
    set_raw_ds,
    study_header,
    write_ct_series,
)
from triage.dicom.limits import ResourceLimitError, ResourceLimits
from triage.dicom.pixels import decode
from triage.dicom.pixels.source import read_source
from triage.dicom.scan.dicomdir import read_dicomdir
from triage.dicom.scan.header import read_instance
from triage.dicom.scan.index import ScanErrorCode
from triage.dicom.scan.scan import scan_export
from triage.dicom.verdict import GeometryVerdict
from triage.dicom.volume.loader import LoadOptions, load_series
from triage.errors import DicomError, GeometryError

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
    record = read_instance(bomb, ResourceLimits(max_inflated_bytes=MIB))
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
    paths = write_ct_series(tmp_path, study_header("huge"), ACME, "huge", slices=3,
                            transfer_syntax=JPEG2000Lossless, edit=huge_matrix)
    with pytest.raises(ResourceLimitError, match=r"declares 65535x65535 pixels per frame "
                                                 r"\(4,294,836,225\), more than "
                                                 r"limits.max_frame_pixels=4,194,304"):
        load_series(paths)


def test_native_pixel_data_short_of_a_header_over_a_cap_is_over_limit_in_the_scan(tmp_path):
    """As the loader refuses compressed data of such a header: the cap, not 'corrupt'."""
    (huge,) = write_ct_series(tmp_path, study_header("nh"), ACME, "nh", slices=1,
                              edit=huge_matrix)
    record = read_instance(huge)
    assert record.error_code is ScanErrorCode.OVER_LIMIT
    assert record.error.startswith("over limit: The header declares 65535x65535 pixels per "
                                   "frame (4,294,836,225), more than "
                                   "limits.max_frame_pixels=4,194,304")
    ds = pydicom.dcmread(huge)
    ds.Rows = ds.Columns = 32
    ds.NumberOfFrames = 5000
    ds.save_as(huge)
    record = read_instance(huge, ResourceLimits(max_frames=4096))
    assert record.error_code is ScanErrorCode.OVER_LIMIT
    assert "declares 5,000 frames, more than limits.max_frames=4,096" in record.error
    record = read_instance(huge, ResourceLimits(max_frames=5000))  # within the caps: short
    assert record.error_code is ScanErrorCode.CORRUPT
    assert record.error == ("corrupt: pixel data has 2048 bytes but Rows, Columns, frames, "
                            "samples and BitsAllocated need 10240000")


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


def test_a_corrupt_rle_segment_that_panics_the_decoder_is_that_files_error(tmp_path):
    """pylibjpeg-rle panics (pyo3's PanicException, a BaseException) on run lengths that
    overrun the frame: still the file's DicomError, not an exception that stops the batch."""
    paths = write_ct_series(tmp_path, study_header("rle"), ACME, "rle", slices=4,
                            transfer_syntax=RLELossless)
    scramble_last_fragment(paths[1])
    with pytest.raises(DicomError, match=r"IM0001\.dcm: Decoding the RLE Lossless pixel data "
                                         r"failed \(PanicException: index out of bounds"):
        load_series(paths)


@pytest.mark.parametrize("fast", [True, False], ids=["direct", "pydicom"])
def test_a_j2k_codestream_declaring_a_huge_image_is_refused_before_decoding(tmp_path, fast):
    """A few hundred bytes whose SIZ declares 60000 x 60000 pixels made OpenJPEG allocate
    gigabytes; the declared size is compared with Rows and Columns first."""
    paths = write_ct_series(tmp_path, study_header("j2k"), ACME, "j2k", slices=3,
                            transfer_syntax=JPEG2000Lossless)
    j2k_declaring(paths[2], 60000, 60000)
    with pytest.raises(DicomError, match=r"IM0002\.dcm: .*declares 60000 x 60000 pixels, but "
                                         r"Columns x Rows is 32 x 32; it is not decoded"):
        read_source(paths[2], 2, fast=fast).stored()
    assert read_source(paths[1], 1, fast=fast).stored().shape == (1, 32, 32)


def test_a_decoder_message_is_one_line_without_object_addresses(tmp_path):
    (path,) = write_ct_series(tmp_path, study_header("msg"), ACME, "msg", slices=1)
    info = read_source(path, 0).info
    err = RuntimeError("Unable to decode:\n  pylibjpeg: failed to read the header\n"
                       "  pillow: cannot identify image file <_io.BytesIO object at 0x7f32a2>")
    text = str(decode._decode_failed(info, err))
    assert "\n" not in text and "0x" not in text
    assert "pylibjpeg: failed to read the header pillow: cannot identify image file " \
           "<_io.BytesIO object>" in text
    with pytest.raises(KeyboardInterrupt):
        decode._decode_failed(info, KeyboardInterrupt())


def _slope(value: str):
    def edit(ds, _):
        set_raw_ds(ds, 0x00281053, [value])
    return edit


def _spacing(value: str):
    def edit(ds, _):
        set_raw_ds(ds, 0x00280030, [value, value])
    return edit


def _step(mm: float):
    def edit(ds, k):
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, k * mm]
    return edit


@pytest.mark.parametrize("edit, message", [
    (_spacing("1000"), r"PixelSpacing \(rows\) is 1000 mm, outside \[0\.05, 30\] mm "
                       r"\(LoadOptions\.spacing_range_mm\)"),
    (_spacing("1e30"), r"PixelSpacing \(rows\) is 1e\+30 mm, outside"),
    (_spacing("1e-30"), r"PixelSpacing \(rows\) is 1e-30 mm, outside"),
    (_spacing("0.001"), r"PixelSpacing \(rows\) is 0\.001 mm, outside"),  # a 0.03 mm field
    (_step(1e5), r"the slice step is 100000 mm, outside"),
], ids=["spacing-1000", "spacing-1e30", "spacing-1e-30", "spacing-0.001", "step-1e5"])
def test_a_spacing_no_clinical_scan_has_is_refused_before_preprocessing(tmp_path, edit,
                                                                         message):
    """Consistent but absurd headers: a slice step of 100 m made preprocessing resample a
    field kilometres long (22 GB); 1e-30 mm overflowed in the device statistics."""
    paths = write_ct_series(tmp_path, study_header("sp"), ACME, "sp", slices=4, edit=edit)
    with pytest.raises(GeometryError, match=message) as caught:
        load_series(paths)
    assert caught.value.verdict == GeometryVerdict.MALFORMED


def test_a_scanned_field_longer_than_the_cap_is_refused(tmp_path):
    paths = write_ct_series(tmp_path, study_header("ext"), ACME, "ext", slices=4)
    with pytest.raises(GeometryError, match=r"The scanned field is 32 mm long \(32 x 32 x 4 "
                                            r"voxels of 1 x 1 x 1 mm\), more than "
                                            r"LoadOptions\.max_extent_mm=31"):
        load_series(paths, options=LoadOptions(max_extent_mm=31.0))
    assert load_series(paths).shape == (32, 32, 4)
    with pytest.raises(ValueError, match="spacing_range_mm must be"):
        LoadOptions(spacing_range_mm=(1.0, 0.5))


def test_a_rescale_beyond_float32_is_refused_not_cached_as_infinite(tmp_path):
    paths = write_ct_series(tmp_path, study_header("rs"), ACME, "rs", slices=4,
                            edit=_slope("1e300"))
    with pytest.raises(DicomError, match=r"RescaleSlope 1e\+300 takes stored values beyond "
                                         r"the float32 range"):
        load_series(paths)
    large = write_ct_series(tmp_path / "ok", study_header("ok"), ACME, "ok", slices=4,
                            edit=_slope("1e30"))  # checked, and finite after all
    assert np.isfinite(load_series(large).array).all()


def test_bits_stored_beyond_bits_allocated_is_refused(tmp_path):
    def edit(ds, _):
        ds.BitsStored, ds.HighBit = 40, 39

    paths = write_ct_series(tmp_path, study_header("bits"), ACME, "bits", slices=4, edit=edit)
    with pytest.raises(DicomError, match=r"IM0000\.dcm: BitsStored \(40\) exceeds "
                                         r"BitsAllocated \(16\)"):
        load_series(paths)


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
