"""`stream_ingest` decodes a long compressed series in parts: same reports, same cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydicom.uid import JPEG2000Lossless

from tests.dicom.loader_factory import SeriesRecipe, own_study, write_series
from triage.dicom.pixels import codecs
from triage.dicom.select.selection import select_series
from triage.engines.runner import ingest_export
from triage.ingest import stream
from triage.ingest.config import IngestConfig
from triage.ingest.study import ingest_study
from triage.preprocess.cache import VolumeCache

pytestmark = pytest.mark.skipif(not codecs.direct_available(JPEG2000Lossless),
                                reason="pylibjpeg-openjpeg is not installed")

CONFIG = {"selection": {"min_slices": 8},
          "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [16, 16, 8]}}
SPLIT_LOG = "Decoding series {uid} of study"


@pytest.fixture
def config() -> IngestConfig:
    return IngestConfig.from_dict(CONFIG)


@pytest.fixture(params=["alone", "with a native study"])
def export(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, list[Path]]:
    """An export whose JPEG 2000 study is worth splitting on two workers.

    Returns the folder, the J2K series' UID and its files.
    """
    root = tmp_path / "export"
    j2k = write_series(root, SeriesRecipe(transfer_syntax=JPEG2000Lossless, n_slices=12,
                                          file_order="shuffled"), name="j2k")
    if request.param != "alone":
        write_series(root, SeriesRecipe(n_slices=10), name="native",
                     mutate=own_study("stream-split", "native"))
    return root, j2k.series_uid, j2k.paths


def _ingest(export: Path, out: Path, config: IngestConfig, workers: int
            ) -> tuple[list[tuple], dict[str, bytes]]:
    """The report rows that must not depend on splitting, and the cached arrays by key."""
    result = ingest_export(export, out, config, workers=workers)
    reports = sorted((r.study_uid, r.status, r.stage, r.verdict, r.cache_key, r.reasons,
                      r.warnings, r.n_slices) for r in result.reports)
    cache = VolumeCache(result.cache_dir)
    arrays = {r.cache_key: cache.get(r.cache_key).array.tobytes()
              for r in result.reports if r.cache_key}
    return reports, arrays


def _split_logged(caplog: pytest.LogCaptureFixture, series_uid: str) -> bool:
    messages = [r.getMessage() for r in caplog.records if r.name == stream.LOGGER.name]
    return any(m.startswith(SPLIT_LOG.format(uid=series_uid)) for m in messages)


def _ingest_checking_decoded(study, config, cache_root, decoded=None, **kwargs):
    """`ingest_study`, after checking that the parts cover every file of the series."""
    if decoded is not None:
        files = select_series(study, config.selection).chosen.instances
        assert set(decoded) == {str(r.path) for r in files}, "the parts were not all used"
    return ingest_study(study, config, cache_root, decoded, **kwargs)


def test_a_split_study_ingests_as_it_does_whole(export, tmp_path, config, caplog,
                                                monkeypatch):
    root, series_uid, _ = export
    whole = _ingest(root, tmp_path / "one", config, workers=1)
    assert {r[1] for r in whole[0]} == {"ok"}
    # A failed check in the worker becomes a failed report, which differs from `whole`.
    monkeypatch.setattr(stream, "ingest_study", _ingest_checking_decoded)
    with caplog.at_level(logging.DEBUG, logger=stream.LOGGER.name):
        split = _ingest(root, tmp_path / "two", config, workers=2)
    assert _split_logged(caplog, series_uid)
    assert not any(str(root) in r.getMessage() for r in caplog.records), "no paths in logs"
    assert split == whole


def test_a_cached_study_is_not_split(export, tmp_path, config, caplog):
    root, series_uid, _ = export
    first = _ingest(root, tmp_path / "out", config, workers=2)
    with caplog.at_level(logging.DEBUG, logger=stream.LOGGER.name):
        again = _ingest(root, tmp_path / "out", config, workers=2)
    assert not _split_logged(caplog, series_uid)
    assert again == first


def test_a_part_that_fails_to_decode_gives_the_unsplit_failure(export, tmp_path, config,
                                                               caplog):
    root, series_uid, paths = export
    data = bytearray(paths[5].read_bytes())
    siz = data.index(b"\xff\x4f\xff\x51") + 4
    data[siz:siz + 40] = bytes(40)  # an unreadable codestream header, the file intact
    paths[5].write_bytes(bytes(data))
    whole = _ingest(root, tmp_path / "one", config, workers=1)
    assert "failed" in {r[1] for r in whole[0]}
    with caplog.at_level(logging.DEBUG, logger=stream.LOGGER.name):
        split = _ingest(root, tmp_path / "two", config, workers=2)
    assert _split_logged(caplog, series_uid)
    assert split == whole


def _die(*_: object) -> None:
    os._exit(3)  # a decoder crash: the worker is gone, no exception reaches the pool


def _die_if_decoded(study, config, cache_root, decoded=None, **kwargs):
    if decoded is not None:
        os._exit(3)
    return ingest_study(study, config, cache_root, decoded, **kwargs)


@pytest.mark.parametrize("crash", ["in a part", "in the ingest from the parts"])
def test_a_worker_dying_on_a_split_study_retries_it_whole(export, tmp_path, config,
                                                          monkeypatch, caplog, crash):
    root, series_uid, _ = export
    whole = _ingest(root, tmp_path / "one", config, workers=1)
    if crash == "in a part":
        monkeypatch.setattr(stream, "decode_part", _die)
    else:
        monkeypatch.setattr(stream, "ingest_study", _die_if_decoded)
    with caplog.at_level(logging.DEBUG, logger=stream.LOGGER.name):
        split = _ingest(root, tmp_path / "two", config, workers=2)
    assert _split_logged(caplog, series_uid)
    assert any(m.startswith("A worker died; retrying study") for m in caplog.messages)
    assert split == whole
