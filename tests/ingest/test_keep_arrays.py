"""`stream_ingest(keep_arrays=True)` hands back each new volume exactly as it cached it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.dicom.loader_factory import SeriesRecipe, own_study, write_series
from triage.dicom.scan.grouping import group_studies
from triage.dicom.scan.scan import scan_export
from triage.ingest.config import IngestConfig
from triage.ingest.stream import stream_ingest
from triage.preprocess.cache import VolumeCache

CONFIG = IngestConfig.from_dict({
    "selection": {"min_slices": 8},
    "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [16, 16, 8]}})


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("export")
    for name in ("a", "b", "c"):
        write_series(root, SeriesRecipe(n_slices=10), name=name,
                     mutate=own_study("keep-arrays", name))
    return group_studies(scan_export(root))


@pytest.mark.parametrize("workers", [1, 2])
def test_new_volumes_come_back_as_cached_and_cache_hits_do_not(studies, tmp_path: Path,
                                                               workers: int):
    cache_root = tmp_path / "cache"
    first = list(stream_ingest(studies, CONFIG, cache_root, workers=workers,
                               keep_arrays=True))
    assert len(first) == 3
    cache = VolumeCache(cache_root)
    for _, outcome in first:
        assert outcome.report.status.value == "ok" and not outcome.report.cache_hit
        cached = cache.get(outcome.report.cache_key).array
        assert outcome.array is not None and outcome.array.dtype == np.float32
        np.testing.assert_array_equal(outcome.array, cached)  # bit for bit, as scored
    # A rerun finds every volume cached: nothing is decoded, nothing is sent back.
    again = list(stream_ingest(studies, CONFIG, cache_root, workers=workers,
                               keep_arrays=True))
    assert all(o.report.cache_hit and o.array is None for _, o in again)


def test_arrays_stay_in_the_workers_unless_asked_for(studies, tmp_path: Path):
    outcomes = list(stream_ingest(studies, CONFIG, tmp_path / "cache", workers=2))
    assert all(o.report.status.value == "ok" and o.array is None for _, o in outcomes)


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_rerun_remakes_a_cached_volume_whose_file_was_damaged(studies, tmp_path: Path,
                                                                damage: str):
    cache_root = tmp_path / "cache"
    first = {s.study_uid: o for s, o in stream_ingest(studies, CONFIG, cache_root,
                                                      keep_arrays=True)}
    cache = VolumeCache(cache_root)
    victim = studies[0].study_uid
    key = first[victim].report.cache_key
    nifti = cache_root / key[:2] / cache.read_sidecar(key)["nifti"]
    if damage == "truncated":
        nifti.write_bytes(nifti.read_bytes()[:-100])
    else:
        nifti.unlink()
    assert cache.get(key) is None
    again = {s.study_uid: o for s, o in stream_ingest(studies, CONFIG, cache_root)}
    assert not again[victim].report.cache_hit  # made again, not taken as cached
    assert all(o.report.cache_hit for uid, o in again.items() if uid != victim)
    assert again[victim].report.cache_key == key
    np.testing.assert_array_equal(cache.get(key).array, first[victim].array)  # repaired
