"""Tests of the volume cache: round trip, keying, atomicity, concurrent readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import triage.io
from triage.dicom.verdict import GeometryVerdict
from triage.io import remove_stale_temp
from triage.preprocess.cache import CacheError, VolumeCache, cache_key
from triage.preprocess.config import PreprocessConfig
from triage.preprocess.pipeline import PREPROCESS_VERSION, PreparedVolume

CONFIG = PreprocessConfig(target_shape=(24, 20, 12))
SOURCE = "1.2.3.4|sop:1.2.3.4.1,1.2.3.4.2"


def make_prepared(seed: int = 0) -> PreparedVolume:
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 5.0, 1.0])
    affine[:3, 3] = [-46.123456789, -38.5, 12.25]
    return PreparedVolume(
        array=rng.random(CONFIG.target_shape, dtype=np.float32), affine=affine,
        modality="CT", verdict=GeometryVerdict.RESAMPLED_IRREGULAR,
        warnings=["irregular spacing resampled"],
        provenance={"study_uid": "1.2.3", "series_uid": "1.2.3.4",
                    "device_group": "acme-ct1", "n_files": 40, "patient_position": "HFS",
                    "patient_name": "DOE^JANE", "PatientID": "PID-7781",
                    "source_path": "/exports/DOE_JANE/ct", "image_type": ["ORIGINAL"]},
        source_shape=(256, 256, 40), source_spacing=(1.4, 1.4, 2.5),
        steps={"pad_value": 0.0, "config_fingerprint": CONFIG.fingerprint()},
    )


@pytest.mark.parametrize("compress", [True, False])
def test_put_get_round_trip(tmp_path, compress):
    cache = VolumeCache(tmp_path / "cache", compress=compress)
    prepared = make_prepared()
    key = cache.put(prepared, source_fingerprint=SOURCE, config=CONFIG)
    assert key == cache.key(SOURCE, CONFIG) and cache.contains(key) and key in cache
    got = cache.get(key)
    assert got.array.dtype == np.float32
    np.testing.assert_array_equal(got.array, prepared.array)
    np.testing.assert_array_equal(got.affine, prepared.affine)  # exact, not NIfTI float32
    assert got.verdict is GeometryVerdict.RESAMPLED_IRREGULAR
    assert got.warnings == prepared.warnings and got.steps == prepared.steps
    assert got.source_shape == prepared.source_shape
    assert got.source_spacing == prepared.source_spacing
    suffix = ".nii.gz" if compress else ".nii"
    assert (tmp_path / "cache" / key[:2] / f"{key}{suffix}").is_file()


def test_nifti_is_readable_by_other_tools(tmp_path):
    import nibabel as nib

    cache = VolumeCache(tmp_path)
    prepared = make_prepared()
    key = cache.put(prepared, source_fingerprint=SOURCE, config=CONFIG)
    image = nib.load(tmp_path / key[:2] / f"{key}.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), prepared.array)
    np.testing.assert_allclose(image.affine, prepared.affine, atol=1e-4)


def test_sidecar_records_config_and_geometry_but_no_identifiers(tmp_path):
    cache = VolumeCache(tmp_path)
    key = cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    meta = cache.read_sidecar(key)
    assert meta["config"] == CONFIG.to_dict()
    assert meta["config_fingerprint"] == CONFIG.fingerprint()
    assert meta["preprocess_version"] == PREPROCESS_VERSION
    assert meta["shape"] == [24, 20, 12] and meta["spacing_mm"] == [4.0, 4.0, 5.0]
    assert meta["source_shape"] == [256, 256, 40]
    assert meta["source_spacing_mm"] == [1.4, 1.4, 2.5]
    assert meta["verdict"] == "resampled-irregular"
    assert meta["provenance"] == {"study_uid": "1.2.3", "series_uid": "1.2.3.4",
                                  "device_group": "acme-ct1", "n_files": 40,
                                  "patient_position": "HFS", "image_type": ["ORIGINAL"]}
    text = (tmp_path / key[:2] / f"{key}.json").read_text()
    for identifier in ("DOE", "PID-7781", "exports", SOURCE):
        assert identifier not in text


def test_hits_and_misses(tmp_path):
    VolumeCache(tmp_path).put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    rerun = VolumeCache(tmp_path)  # a new process would open the cache like this
    assert rerun.get(rerun.key(SOURCE, CONFIG)) is not None
    changed = PreprocessConfig(target_shape=(24, 20, 12), ct_window=(-160, 240))
    assert rerun.get(rerun.key(SOURCE, changed)) is None
    assert rerun.get(rerun.key(SOURCE + "|new-file", CONFIG)) is None
    bumped = VolumeCache(tmp_path, version=PREPROCESS_VERSION + "-next")
    assert not bumped.contains(bumped.key(SOURCE, CONFIG))
    assert cache_key(SOURCE, CONFIG.fingerprint()) == rerun.key(SOURCE, CONFIG)


def test_get_or_create_computes_once(tmp_path):
    cache, calls = VolumeCache(tmp_path), []

    def create() -> PreparedVolume:
        calls.append(1)
        return make_prepared()

    first, hit1 = cache.get_or_create(SOURCE, CONFIG, create)
    second, hit2 = cache.get_or_create(SOURCE, CONFIG, create)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first.array, second.array)


def test_crash_before_sidecar_rename_leaves_no_entry(tmp_path, monkeypatch):
    cache = VolumeCache(tmp_path)
    real_replace = os.replace

    def crash_on_sidecar(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    monkeypatch.setattr(triage.io.os, "replace", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    key = cache.key(SOURCE, CONFIG)
    assert not cache.contains(key) and cache.get(key) is None
    assert list(cache.entries()) == []


def test_killed_writer_leaves_only_invisible_temp_files(tmp_path):
    """A real process killed (no cleanup handlers run) while writing the sidecar."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import triage.io
        from test_cache import CONFIG, SOURCE, make_prepared
        from triage.preprocess.cache import VolumeCache
        real = os.replace
        def die(src, dst):
            if str(dst).endswith(".json"):
                os._exit(9)
            real(src, dst)
        triage.io.os.replace = die
        VolumeCache({str(tmp_path)!r}).put(make_prepared(), source_fingerprint=SOURCE,
                                           config=CONFIG)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    cache = VolumeCache(tmp_path)
    key = cache.key(SOURCE, CONFIG)
    leftovers = sorted(p.name for p in (tmp_path / key[:2]).iterdir())
    assert f"{key}.nii.gz" in leftovers  # orphan NIfTI: no sidecar, so no entry
    assert any(name.endswith(".tmp") for name in leftovers)
    assert not cache.contains(key) and cache.get(key) is None
    assert list(cache.entries()) == []
    assert remove_stale_temp(tmp_path) == 1
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / key[:2]).iterdir())
    cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)  # rerun heals
    assert [e.key for e in cache.entries()] == [key]


def test_concurrent_readers_during_rewrites(tmp_path):
    cache = VolumeCache(tmp_path)
    prepared = make_prepared()
    key = cache.put(prepared, source_fingerprint=SOURCE, config=CONFIG)

    def read(_: int) -> bool:
        got = VolumeCache(tmp_path).get(key)
        return got is not None and np.array_equal(got.array, prepared.array)

    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = pool.map(read, range(40))
        for _ in range(5):
            cache.put(prepared, source_fingerprint=SOURCE, config=CONFIG)
        assert all(reads)


def test_damaged_entry_reads_as_a_miss(tmp_path, caplog):
    cache = VolumeCache(tmp_path, compress=False)
    key = cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    nifti = tmp_path / key[:2] / f"{key}.nii"
    data = bytearray(nifti.read_bytes())
    data[-8:] = b"\x00" * 8
    nifti.write_bytes(bytes(data))
    assert cache.get(key) is None
    assert "does not match its checksum" in caplog.text
    nifti.write_bytes(b"not a nifti")
    assert cache.get(key) is None
    (tmp_path / key[:2] / f"{key}.json").write_text("{truncated")
    assert cache.get(key) is None
    assert "sidecar of" in caplog.text


def test_index_lists_entries_and_format_switch(tmp_path):
    VolumeCache(tmp_path).put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    cache = VolumeCache(tmp_path, compress=False)
    other = cache.put(make_prepared(1), source_fingerprint="other", config=CONFIG)
    key = cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    entries = {e.key: e for e in cache.entries()}
    assert set(entries) == {key, other}
    entry = entries[key]
    assert (entry.series_uid, entry.device_group, entry.shape) == ("1.2.3.4", "acme-ct1",
                                                                   (24, 20, 12))
    assert entry.nifti.name == f"{key}.nii"
    assert not entry.nifti.with_name(f"{key}.nii.gz").exists()  # old format removed
    assert json.loads((tmp_path / key[:2] / f"{key}.json").read_text())["nifti"] == (
        f"{key}.nii")


def test_root_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match=r"exists and is not a directory"):
        VolumeCache(tmp_path / "file")


def test_an_entry_looks_intact_until_its_file_is_cut_or_gone(tmp_path):
    cache = VolumeCache(tmp_path)
    key = cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    sidecar = cache.read_sidecar(key)
    nifti = tmp_path / key[:2] / sidecar["nifti"]
    assert sidecar["nifti_bytes"] == nifti.stat().st_size
    assert cache.looks_intact(key, sidecar)
    nifti.write_bytes(nifti.read_bytes()[:-1])
    assert not cache.looks_intact(key, sidecar)
    # An entry from before sizes were recorded is judged by its file alone.
    older = {k: v for k, v in sidecar.items() if k != "nifti_bytes"}
    assert cache.looks_intact(key, older)
    nifti.unlink()
    assert not cache.looks_intact(key, older)


def test_a_discarded_entry_is_gone_sidecar_first(tmp_path):
    cache = VolumeCache(tmp_path)
    key = cache.put(make_prepared(), source_fingerprint=SOURCE, config=CONFIG)
    cache.discard(key)
    assert key not in cache and cache.get(key) is None
    assert list(tmp_path.rglob(f"{key}*")) == []
    cache.discard(key)  # nothing left to remove: no error
