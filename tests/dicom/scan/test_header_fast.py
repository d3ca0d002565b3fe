"""The scan's fast header path gives exactly the record the pydicom path gives, or declines."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import pytest
from pydicom import config

from tests.dicom.factories import ACME, build_export, study_header, write_ct_series
from triage.data.synth.devices import DEVICE_PROFILES
from triage.dicom import fast_reader, values
from triage.dicom.pixels import slice_header
from triage.dicom.pixels.source import read_source
from triage.dicom.raw_header import NeedMoreBytes, Unsupported, walk_header
from triage.dicom.scan import header
from triage.dicom.scan.header_fast import fast_record
from triage.dicom.volume.loader import load_series
from triage.errors import GeometryError


def _files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)
                  and p.stat().st_size > 0)


def _both(path: Path):
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fast = fast_record(fh, path, size)
    with mock.patch.object(header, "fast_record", lambda *args: None):
        slow = header.read_instance(path)  # the pydicom path, its error handling included
    return fast, slow


def _compare(files: list[Path]) -> tuple[int, list[Path]]:
    """Assert fast == pydicom wherever the fast path answers; (answered, CT image files)."""
    taken, images = 0, []
    for path in files:
        fast, slow = _both(path)
        if fast is not None:
            taken += 1
            assert fast == slow, path
        if slow is not None and slow.ok and slow.modality == "CT" and slow.has_pixel_data:
            images.append(path)
    return taken, images


@pytest.fixture(params=["WARN", "RAISE"])
def validation_mode(request, monkeypatch):
    monkeypatch.setattr(config.settings, "reading_validation_mode",
                        getattr(config, request.param))


def test_synthetic_devices_take_the_fast_path_with_identical_records(make_synth_export,
                                                                     validation_mode):
    export = make_synth_export(studies=len(DEVICE_PROFILES), slices=4, extras=True,
                               devices=",".join(DEVICE_PROFILES))
    taken, images = _compare(_files(export.out_dir))
    assert taken >= len(images) > 4 * len(DEVICE_PROFILES)


def test_messy_export_records_are_identical_or_declined(tmp_path, validation_mode):
    export = build_export(tmp_path / "export")
    taken, images = _compare(_files(export.root))
    assert taken >= len(images) - 1  # all but the file truncated in its pixel data


def test_real_file_corpus_records_are_identical_or_declined(validation_mode):
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    if not root.is_dir():
        pytest.skip("pydicom's test files are not installed")
    assert _compare(_files(root))[0] > 50


def test_read_instance_uses_the_fast_path_for_a_plain_slice(tmp_path, monkeypatch):
    (path,) = write_ct_series(tmp_path, study_header("fast"), ACME, "fast", slices=1)
    monkeypatch.setattr(header, "_read_open_file", None)  # would raise if called
    assert header.read_instance(path).ok


def test_walk_declines_what_pydicom_would_read_differently(tmp_path):
    (path,) = write_ct_series(tmp_path, study_header("w"), ACME, "w", slices=1)
    data = path.read_bytes()
    wanted = frozenset({0x0020000E})
    assert walk_header(data, len(data), wanted).values[0x0020000E]
    with pytest.raises(NeedMoreBytes):
        walk_header(data[:400], len(data), wanted)
    cut = data[:pydicom.dcmread(path)["SeriesDescription"].file_tell + 2]
    with pytest.raises(Unsupported):  # a value cut by the end of the file
        walk_header(cut, len(cut), wanted)
    with pytest.raises(Unsupported):  # no DICM prefix
        walk_header(data[132:], len(data) - 132, wanted)


@pytest.mark.parametrize(("fast", "carried"), [(True, False), (True, True), (False, False)],
                         ids=["fast-reader", "fast-reader-scan-walk", "pydicom"])
def test_scan_and_loader_read_the_same_values_through_one_parser(make_synth_export,
                                                                 monkeypatch, fast, carried):
    """Each file's plane geometry is parsed once by the scan and once by the loader, both
    times by `values.frame_geometry`, and the two give the same values and identities;
    also when the loader takes the scan's walk of the header (`InstanceRecord.walked`)
    instead of walking it again: it parses those raw values itself."""
    export = make_synth_export(studies=4, slices=4, extras=False,
                               devices="acme,borealis,cygnus,ember")
    calls = []
    parse = values.frame_geometry

    def spy(ds, notes):
        calls.append(parse(ds, notes))
        return calls[-1]

    monkeypatch.setattr(values, "frame_geometry", spy)
    monkeypatch.setattr(slice_header, "frame_geometry", spy)
    checked = 0
    for path in _files(export.out_dir):
        calls.clear()
        record = header.read_instance(path)
        if record is None or not record.ok or not record.has_pixel_data:
            continue
        assert record.walked is not None, path  # single-frame little-endian files
        source = read_source(path, 0, fast=fast, walked=record.walked if carried else None)
        assert source.reader == ("fast" if fast else "pydicom")
        assert len(calls) == 2 and calls[0] == calls[1], path  # scan, then loader
        (frame,) = source.frames
        assert record.image_position == tuple(frame.position)
        assert record.image_orientation == tuple(frame.orientation)
        assert record.pixel_spacing == frame.pixel_spacing
        info = source.info
        assert (record.rows, record.columns, record.modality, record.manufacturer,
                record.model_name, record.image_type, record.sop_instance_uid,
                record.series_uid, record.study_uid, record.slice_thickness) == (
            info.rows, info.columns, info.modality, info.manufacturer, info.model_name,
            info.image_type, info.sop_instance_uid, info.series_uid, info.study_uid,
            info.slice_thickness)
        checked += 1
    assert checked >= 4 * 4


def _series_records(export: Path) -> dict[str, list]:
    series: dict[str, list] = {}
    for path in _files(export):
        record = header.read_instance(path)
        if record is not None and record.ok and record.has_pixel_data:
            series.setdefault(record.series_uid, []).append(record)
    return series


def test_the_loader_takes_the_scans_walk_instead_of_walking_again(make_synth_export,
                                                                  monkeypatch):
    """Every syntax of the synthetic devices (explicit, implicit, RLE, JPEG 2000): with the
    records' walks the loader walks no header and builds the same volume as without."""
    export = make_synth_export(studies=4, slices=4, extras=False,
                               devices="acme,borealis,cygnus,ember")
    walks = []
    walk = fast_reader.walk_header

    def spy(*args):
        walks.append(args[0])
        return walk(*args)

    monkeypatch.setattr(fast_reader, "walk_header", spy)
    series = _series_records(export.out_dir)
    assert len(series) >= 4
    for records in series.values():
        paths = [r.path for r in records]
        walks.clear()
        carried = load_series(paths, walked=[r.walked for r in records])
        assert walks == []
        walked_again = load_series(paths)
        assert len(walks) == len(paths)
        np.testing.assert_array_equal(carried.array, walked_again.array)
        np.testing.assert_array_equal(carried.affine, walked_again.affine)
        assert carried.verdict == walked_again.verdict
        assert carried.provenance == walked_again.provenance


def test_a_walk_that_no_longer_fits_the_file_is_walked_again(tmp_path):
    """A file changed since the scan (other size, pixel data elsewhere) is walked anew."""
    paths = write_ct_series(tmp_path, study_header("stale"), ACME, "stale", slices=2)
    record = header.read_instance(paths[0])
    assert record.walked is not None
    fresh = fast_reader.read_fast(paths[0])
    assert fresh is not None
    shifted = replace(record.walked, pixel_offset=record.walked.pixel_offset + 2)
    resized = replace(record.walked, file_size=record.walked.file_size + 1)
    for stale in (shifted, resized):
        again = fast_reader.read_fast(paths[0], stale)
        assert again is not None
        assert (again.pixel_offset, again.pixel_length) == (fresh.pixel_offset,
                                                            fresh.pixel_length)
        assert again.tags.values == fresh.tags.values
    with pytest.raises(ValueError, match="walked headers"):
        load_series(paths, walked=[record.walked])


@pytest.mark.parametrize("text", ["1_0", "0x10", " 1e400"])
def test_one_decimal_parser_rejects_what_python_float_accepts(text):
    """'1_0' is 10.0 to float() but not a DICOM decimal string: scan and loader drop it."""
    notes: list[str] = []
    raw = values.RawValues({0x00281053: text.encode()})
    assert values.decimals(raw, 0x00281053, "RescaleSlope", 1, notes) is None
    assert isinstance(notes[0], values.Dropped)
    with pytest.raises(GeometryError, match="RescaleSlope is"):
        slice_header.decimal(raw, 0x00281053, "RescaleSlope", Path("x.dcm"), 1.0)


def test_a_walked_header_packs_its_values_and_gives_them_back():
    """The scan holds one walked header per file: packed into one byte string, the raw
    values come back as they went in, empty ones (a sequence) and their order included;
    files with the same tags share one tuple of tags, and the record pickles."""
    import pickle

    raw = {0x00280010: b"\x40\x00", 0x00081115: b"", 0x00200032: b"-125.0\\-125.0\\10.5 "}
    walked = fast_reader.WalkedHeader.pack(raw, "1.2.840.10008.1.2.1", 4096, 1200, 2048,
                                           False)
    assert walked.values == raw and list(walked.values) == list(raw)
    other = fast_reader.WalkedHeader.pack(dict(raw), "1.2.840.10008.1.2.1", 4096, 1200,
                                          2048, False)
    assert other.tags is walked.tags
    assert pickle.loads(pickle.dumps(walked)) == walked
    assert fast_reader.WalkedHeader.pack({}, "1.2.840.10008.1.2", 10, 2, 8, False).values \
        == {}
