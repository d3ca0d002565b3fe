"""The scan's fast header path gives exactly the record the pydicom path gives, or declines."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom
import pytest
from pydicom import config

from tests.dicom.factories import ACME, build_export, study_header, write_ct_series
from triage.data.synth.devices import DEVICE_PROFILES
from triage.dicom import fast_reader, header, header_hints
from triage.dicom.fast_reader import _parse as parse
from triage.dicom.header_fast import fast_record
from triage.dicom.loader import load_series
from triage.dicom.raw_header import NeedMoreBytes, Unsupported, walk_header
from triage.dicom.scan import scan_export


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


def test_loader_reuses_the_scan_walk_only_for_unchanged_files(make_synth_export, monkeypatch):
    export = make_synth_export(studies=4, slices=5, devices="acme,borealis,cygnus,ember")
    series = sorted({p.parent for p in _files(export.out_dir) if p.suffix == ".dcm"})
    header_hints.forget()
    walked = {folder: load_series(sorted(folder.glob("*.dcm"))) for folder in series}
    scan_export(export.out_dir, workers=1)  # leaves hints for every slice
    calls = []
    monkeypatch.setattr(fast_reader, "_parse", lambda data: calls.append(1) or parse(data))
    changed = sorted(series[0].glob("*.dcm"))[0]
    changed.write_bytes(changed.read_bytes())  # same bytes: the hint still holds
    hinted = {folder: load_series(sorted(folder.glob("*.dcm"))) for folder in series}
    assert calls == []
    for folder in series:
        np.testing.assert_array_equal(walked[folder].array, hinted[folder].array)
        np.testing.assert_array_equal(walked[folder].affine, hinted[folder].affine)
        assert walked[folder].provenance == hinted[folder].provenance
    scan_export(export.out_dir, workers=1)
    other = sorted(series[1].glob("*.dcm"))[0]
    other.write_bytes(other.read_bytes() + b"\0\0")  # a different length: walked again
    load_series(sorted(series[1].glob("*.dcm")))
    assert len(calls) == 1
    header_hints.forget()
