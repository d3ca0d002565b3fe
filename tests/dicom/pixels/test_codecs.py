"""Direct JPEG 2000 / RLE decoding equals pydicom's, and the fast path needs no pydicom."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.dicom.loader_factory import SeriesRecipe, write_series
from triage.dicom import geometry, tags
from triage.dicom.fast_reader import read_fast
from triage.dicom.pixels import codecs, decode
from triage.dicom.pixels.source import read_source

pytestmark = pytest.mark.skipif(
    not (codecs.direct_available(JPEG2000Lossless) and codecs.direct_available(RLELossless)),
    reason="pylibjpeg-openjpeg or pylibjpeg-rle is not installed")


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless, JPEGLSLossless])
def test_direct_decoding_equals_pydicom(tmp_path: Path, syntax: str) -> None:
    if not codecs.direct_available(syntax):
        pytest.skip(f"no direct plugin for {syntax.name} here")
    series = write_series(tmp_path, SeriesRecipe(transfer_syntax=syntax, n_slices=3))
    for path in series.paths:
        quick = read_fast(path)
        assert quick is not None and quick.encapsulated
        source = read_source(path, 0)
        direct = codecs.decode_single_frame(quick.data, quick.pixel_offset, source.info)
        assert direct is not None, "the common case must take the direct path"
        reference = pydicom.dcmread(path).pixel_array
        assert direct.dtype == reference.dtype
        np.testing.assert_array_equal(direct, reference)


def test_direct_decoding_declines_what_it_does_not_cover(tmp_path: Path) -> None:
    series = write_series(tmp_path, SeriesRecipe(transfer_syntax=JPEG2000Lossless, n_slices=2))
    quick = read_fast(series.paths[0])
    info = read_source(series.paths[0], 0).info
    assert codecs.decode_single_frame(quick.data, quick.pixel_offset,
                                      replace(info, n_frames=2)) is None
    assert codecs.decode_single_frame(quick.data, quick.pixel_offset,
                                      replace(info, photometric="RGB")) is None
    assert codecs.decode_single_frame(quick.data, quick.pixel_offset,
                                      replace(info, bits_stored=info.bits_stored - 1)) is None
    assert codecs.decode_single_frame(quick.data, quick.pixel_offset + 1, info) is None


def test_syntax_names_match_pydicom() -> None:
    for uid, name in decode.SYNTAX_NAMES.items():
        assert UID(uid).name == name


def test_tilt_reslice_in_place_equals_a_fresh_output() -> None:
    rng = np.random.default_rng(3)
    stack = rng.normal(size=(6, 20, 24)).astype(np.float32)
    shifts = np.array([[0, 0], [0.4, 0], [-1.7, 0.2], [3.0, -2.5], [0, 1e-8], [25.0, 0]])
    fresh = geometry.reslice_tilt(stack, shifts, -5.0)
    in_place = geometry.reslice_tilt(stack.copy(), shifts, -5.0, out=None)
    same = stack.copy()
    assert geometry.reslice_tilt(same, shifts, -5.0, out=same) is same
    np.testing.assert_array_equal(fresh, in_place)
    np.testing.assert_array_equal(fresh, same)


LOAD_SCRIPT = textwrap.dedent("""
    import sys
    from triage.dicom.scan.grouping import group_studies
    from triage.dicom.volume.loader import load_series
    from triage.dicom.scan.scan import scan_export
    from triage.dicom.select.selection import SelectionRules, select_series

    verdicts = []
    for study in group_studies(scan_export(sys.argv[1], workers=1)):
        chosen = select_series(study, SelectionRules(min_slices=2)).chosen
        verdicts.append(load_series([r.path for r in chosen.instances]).verdict.value)
    print(sorted(verdicts), "pydicom" in sys.modules)
""")


def _load_in_a_fresh_process(export_dir) -> subprocess.CompletedProcess:
    """Scan, select and load every study of `export_dir` in a new interpreter; it prints
    the sorted verdicts and whether pydicom was imported."""
    return subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(export_dir)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_scan_and_load_of_uncompressed_files_never_import_pydicom(make_synth_export) -> None:
    """Start-up time: pydicom (0.2-0.4 s to import) is only for files the fast paths decline
    and for compressed pixel data (`pydicom.encaps` cuts the frames out)."""
    export = make_synth_export(studies=3, slices=4, devices="acme")
    run = _load_in_a_fresh_process(export.out_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['ok', 'ok', 'ok'] False"


def _pydicom_test_files(syntaxes):
    """(path, header read) of pydicom's own test files in one of `syntaxes`."""
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    for path in sorted(root.rglob("*.dcm")):
        quick = read_fast(path)
        if quick is not None and quick.transfer_syntax in syntaxes:
            yield path, quick


def test_j2k_parameters_are_pydicoms_and_agree_with_openjpeg() -> None:
    """The direct J2K path reads precision and sign from SIZ (`codecs.j2k_parameters`);
    for every J2K file of pydicom's data that equals pydicom's `get_j2k_parameters` and
    OpenJPEG's own header read."""
    from io import BytesIO

    import openjpeg
    from pydicom.pixels.utils import get_j2k_parameters

    checked = 0
    for path, quick in _pydicom_test_files(codecs.JPEG2000_SYNTAXES):
        frame = codecs.frame_bytes(quick.data, quick.pixel_offset)
        if frame is None or frame[:4] != b"\xff\x4f\xff\x51":
            continue
        try:
            reference = openjpeg.get_parameters(BytesIO(frame), 0)
        except RuntimeError:
            continue
        params = codecs.j2k_parameters(frame)
        theirs = get_j2k_parameters(frame)
        assert (params["precision"], params["is_signed"]) == (
            theirs["precision"], theirs["is_signed"]) == (
            reference["precision"], reference["is_signed"]), path.name
        checked += 1
    assert checked >= 5


def test_direct_jpegls_equals_pydicom_on_its_test_files() -> None:
    """CharLS called directly gives pydicom's pixels for every single-frame greyscale
    JPEG-LS file of pydicom's data it accepts (signed ones are left to pydicom)."""
    if not codecs.direct_available(JPEGLSLossless):
        pytest.skip("pyjpegls is not installed")
    checked = 0
    for path, quick in _pydicom_test_files(codecs.JPEGLS_SYNTAXES):
        try:
            info = read_source(path, 0).info
        except Exception:  # noqa: BLE001 - files the loader refuses are not this test's
            continue
        direct = codecs.decode_single_frame(quick.data, quick.pixel_offset, info)
        if direct is None:
            continue
        np.testing.assert_array_equal(direct, pydicom.dcmread(path).pixel_array,
                                      err_msg=path.name)
        checked += 1
    assert checked >= 1


def test_frame_bytes_are_pydicoms_file_by_file() -> None:
    """The items walk of `codecs.frame_bytes` gives `pydicom.encaps.generate_frames`' frame
    for every single-frame encapsulated file of pydicom's data."""
    checked = 0
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    for path in sorted(root.rglob("*.dcm")):
        quick = read_fast(path)
        if (quick is None or quick.transfer_syntax not in tags.ENCAPSULATED_SYNTAXES
                or quick.pixel_offset is None or int(pydicom.dcmread(
                    path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1) != 1):
            continue  # the direct paths take single frames only
        ours = codecs.frame_bytes(quick.data, quick.pixel_offset)
        assert ours == codecs._pydicom_frame_bytes(quick.data, quick.pixel_offset) or (
            ours is None), path.name
        checked += ours is not None
    assert checked >= 20


def test_rle_and_jpeg2000_loads_import_no_pydicom(make_synth_export) -> None:
    """Start-up time: the direct RLE and JPEG 2000 paths walk the items and read SIZ
    themselves, so a compressed CT series loads without importing pydicom."""
    export = make_synth_export(studies=2, slices=4, devices="borealis,cygnus")
    run = _load_in_a_fresh_process(export.out_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['ok', 'ok'] False"
