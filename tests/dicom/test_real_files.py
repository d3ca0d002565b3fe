"""Real-world files: every file of pydicom's test data and of pydicom-data loads or is
rejected with a specific `DicomError`, never another exception.

The files are read from the installed packages' folders directly (no
``get_testdata_files``, which may try to download). Three passes:

* each file alone (`load_series([path])`);
* files grouped by SeriesInstanceUID where several share one;
* for each greyscale image, the stored values we decode (fast reader and pydicom path)
  equal pydicom's ``pixel_array``.

``test_corpus_summary`` prints the loaded/rejected table (``pytest -s`` or ``-rP``); the
same table is in docs/geometry.md.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from triage.dicom.fast_reader import read_fast
from triage.dicom.pixels import decode
from triage.dicom.pixels.slice_header import read_image_info
from triage.dicom.volume.loader import load_series
from triage.errors import DicomError, GeometryError

_NOT_DICOM = {".txt", ".json", ".dump", ".icc", ".gz"}


def _roots() -> list[Path]:
    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    spec = importlib.util.find_spec("data_store")
    if spec is not None and spec.submodule_search_locations:
        roots.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    return [r for r in roots if r.is_dir()]


def _corpus() -> list[Path]:
    return [p for root in _roots() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() not in _NOT_DICOM and p.name != "README"]


def _label(path: Path) -> str:
    for root in _roots():
        if path.is_relative_to(root):
            return f"{root.parent.name}/{path.relative_to(root)}"
    return path.name


def _series_groups(files: list[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                uid = str(ds.get("SeriesInstanceUID", "") or "")
            except Exception:  # unreadable files are covered by the single-file pass
                continue
        if uid:
            groups[uid].append(path)
    return {f"{len(p)}-files-{_label(p[0])}": p for p in groups.values() if len(p) > 1}


FILES = _corpus()
SERIES = _series_groups(FILES)


def outcome(paths: list[Path]) -> str:
    """'loaded (<verdict>)' or 'rejected: <error class>[verdict]: <reason>'.

    Fails the test when any exception other than `DicomError` escapes, or when the
    message does not name a file or folder of the input.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warnings about odd test files
        try:
            volume = load_series(paths)
        except DicomError as err:
            message = str(err)
            assert err.path is not None, message
            assert message.startswith(f"{err.path}: "), message
            assert any(str(err.path) in (str(p), str(p.parent)) or
                       Path(p).is_relative_to(err.path) for p in paths), message
            reason = message[len(str(err.path)) + 2:]
            assert len(reason.split()) >= 6, f"message too terse: {message}"
            verdict = getattr(err, "verdict", None)
            tag = f"[{verdict.value}]" if isinstance(err, GeometryError) and verdict else ""
            return f"rejected: {type(err).__name__}{tag}: {_reason_key(reason)}"
    assert volume.array.dtype == np.float32 and volume.array.ndim == 3
    assert np.isfinite(volume.affine).all()
    return f"loaded ({volume.verdict.value})"


def _reason_key(reason: str) -> str:
    """The reason with numbers, UIDs and quoted values removed, for counting."""
    text = re.split(r"(?<=[.;])\s", reason, maxsplit=1)[0]
    text = re.sub(r"\(.*?\)", "(...)", text)
    return re.sub(r"[-\d.]+\d", "N", text)[:90]


@pytest.fixture(autouse=True)
def _quiet_loader(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="triage")


@pytest.mark.skipif(not FILES, reason="pydicom's test files are not installed")
@pytest.mark.parametrize("path", FILES, ids=[_label(p) for p in FILES])
def test_single_file(path: Path) -> None:
    if outcome([path]).startswith("loaded"):  # multi-frame: enhanced CT, RT Dose grids
        _assert_same_grid_as_simpleitk(path)


def _corners(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World (LPS) centres of the 8 corner voxels, sorted, so that axis order and
    direction (ITK may stack the slices the other way round) do not matter."""
    idx = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                    for k in (0, shape[2] - 1)], dtype=float)
    points = idx @ affine[:3, :3].T + affine[:3, 3]
    return points[np.lexsort(points.T[::-1])]


def _assert_same_grid_as_simpleitk(path: Path) -> None:
    """A multi-frame file that loads covers the same voxel grid as SimpleITK reads."""
    sitk = pytest.importorskip("SimpleITK")
    volume = load_series([path])
    image = sitk.ReadImage(str(path))
    theirs = np.eye(4)
    theirs[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) * np.array(image.GetSpacing())
    theirs[:3, 3] = image.GetOrigin()
    assert tuple(image.GetSize()) == volume.shape
    np.testing.assert_allclose(_corners(volume.affine, volume.shape),
                               _corners(theirs, volume.shape), atol=1e-3)


@pytest.mark.parametrize("paths", list(SERIES.values()), ids=list(SERIES))
def test_series_grouped_by_uid(paths: list[Path]) -> None:
    if outcome(paths).startswith("loaded"):
        _assert_matches_simpleitk(paths)


def _assert_matches_simpleitk(paths: list[Path]) -> None:
    """A real series that loads has SimpleITK's geometry and voxel values."""
    sitk = pytest.importorskip("SimpleITK")
    volume = load_series(paths)
    reader = sitk.ImageSeriesReader()
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    names = reader.GetGDCMSeriesFileNames(str(paths[0].parent), uid)
    assert sorted(names) == sorted(str(p) for p in paths)
    reader.SetFileNames(names)
    image = reader.Execute()
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction,
                               atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), volume.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image).transpose(2, 1, 0),
                               volume.array, rtol=1e-5, atol=1e-4)


#: Decoding and comparing images above this many pixels takes seconds (JPEG 2000
#: radiographs of 1955 x 1841): marked slow.
_LARGE = 2_000_000


def _decode_cases(files: list[Path]) -> list:
    """(path, fast) for greyscale images; the fast reader where it accepts the file."""
    cases = []
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
                greyscale = (ds.get("SamplesPerPixel", 1) == 1
                             and str(ds.get("PhotometricInterpretation", "")).startswith(
                                 "MONOCHROME")
                             and ds.get("SOPClassUID") != "1.2.840.10008.5.1.4.1.1.66.4")
            except Exception:  # no Rows, unreadable: nothing to decode
                continue
        if not greyscale:
            continue
        marks = [pytest.mark.slow] if pixels > _LARGE else []
        for fast in ([True, False] if read_fast(path) is not None else [False]):
            reader = "fast-reader" if fast else "pydicom"
            cases.append(pytest.param(path, fast, marks=marks, id=f"{_label(path)}-{reader}"))
    return cases


def _decode(path: Path, fast: bool) -> np.ndarray:
    """Our stored values, through the fast reader or pydicom, skipping geometry checks."""
    if fast:
        quick = read_fast(path)
        assert quick is not None, "the fast reader accepted this file at collection"
        info = read_image_info(quick.tags, path, quick.transfer_syntax)
        if quick.encapsulated:
            return decode.encapsulated_stored(quick.data, quick.pixel_offset, info)
        stored = decode.native_stored(quick.data, quick.pixel_offset, quick.pixel_length,
                                      info)
        assert stored is not None
        return stored
    ds = pydicom.dcmread(path, force=True)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    return decode.dataset_stored(ds, read_image_info(ds, path, syntax))


@pytest.mark.parametrize(("path", "fast"), _decode_cases(FILES))
def test_decoded_values_match_pydicom(path: Path, fast: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = pydicom.dcmread(path, force=True).pixel_array
        except Exception as err:  # pydicom cannot decode it: fail cleanly or decode it
            try:
                stored = _decode(path, fast)
            except DicomError:
                pytest.skip(f"pydicom cannot decode it ({type(err).__name__}); "
                            "neither can we, and we raised DicomError")
            assert stored.ndim == 3  # e.g. only the sequence delimiter is missing at EOF
            pytest.skip(f"pydicom cannot decode it ({type(err).__name__}); we decoded "
                        f"{stored.shape} but have no reference values")
        stored = _decode(path, fast)
    np.testing.assert_array_equal(stored.reshape(expected.shape), expected)


def test_corpus_summary() -> None:
    """Print how many files and series load and why the others are rejected."""
    counts: Counter[str] = Counter()
    for path in FILES:
        counts["file " + outcome([path])] += 1
    for paths in SERIES.values():
        counts["series " + outcome(paths)] += 1
    print(f"\nReal-file corpus: {len(FILES)} files, {len(SERIES)} multi-file series")
    for key, n in sorted(counts.items()):
        print(f"{n:5d}  {key}")
    assert sum(n for k, n in counts.items() if k.startswith("file ")) == len(FILES)


def _corpus_export(root: Path) -> Path:
    """The corpus as one export: a hard link (or a copy) per file, folders as in the packages.

    Not symbolic links: the scan does not follow links that leave the export."""
    for path in FILES:
        link = root / _label(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, link)
        except OSError:  # another file system
            shutil.copyfile(path, link)
    return root


def _study_uids(files: list[Path]) -> dict[str, set[str]]:
    """Study Instance UID -> the PatientIDs of its files, as pydicom reads them."""
    studies: dict[str, set[str]] = defaultdict(set)
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                uid = str(ds.get("StudyInstanceUID", "") or "")
            except Exception:  # unreadable files are pseudo-studies of their own
                continue
        if uid and ds.get("SOPClassUID") != "1.2.840.10008.1.3.10":  # not a DICOMDIR
            studies[uid].add(str(ds.get("PatientID", "") or "").strip())
    return studies


@pytest.mark.skipif(not FILES, reason="pydicom's test files are not installed")
@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "two-workers"])
def test_corpus_ingest_accounts_for_every_study(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                workers: int) -> None:
    """Issue 15's acceptance: the whole corpus ingested with every modality allowed and
    min_slices 2 gives every study exactly one row (two patients under one study UID: one
    row each), no `internal` failure, no ok study with fewer than 2 slices, and no pydicom
    noise on stderr."""
    from triage.engines.runner import ingest_export
    from triage.ingest.config import IngestConfig

    export = _corpus_export(tmp_path / "export")
    config = IngestConfig.from_dict({"selection": {"allowed_modalities": ["*"],
                                                   "min_slices": 2}})
    result = ingest_export(export, tmp_path / "out", config, workers=workers)
    rows = result.reports
    uids = [r.study_uid for r in rows]
    assert len(uids) == len(set(uids)), "a study appears twice"
    for uid, patients in _study_uids(FILES).items():
        expected = [uid] if len(patients) == 1 else [
            f"{uid}#patient-{k}" for k in range(1, len(patients) + 1)]
        assert all(e in uids for e in expected), f"study {uid} is missing from the report"
    assert sum(r.n_files for r in rows) == result.summary["files"], "a file is not counted"
    internal = [f"{r.study_uid}: {r.reasons}" for r in rows if r.stage == "internal"]
    assert not internal
    thin = [(r.study_uid, r.n_slices) for r in rows if r.status.value == "ok" and r.n_slices < 2]
    assert not thin
    assert "(unknown)" not in result.summary["device_group"]
    assert "pydicom" not in capfd.readouterr().err
    outcomes = Counter(f"{r.status.value} {r.stage}".strip() for r in rows)
    print(f"\nCorpus ingest: {len(FILES)} files, {result.summary['files']} records, "
          f"{len(rows)} studies: {dict(sorted(outcomes.items()))}")
