"""`load_many`: the same result for every series inline, in a pool, and split across workers."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pytest
from pydicom.uid import JPEG2000Lossless

from benchmarks.ingest.load_pool import load_many
from tests.dicom.loader_factory import SeriesRecipe, write_series
from triage.dicom.pixels import codecs
from triage.dicom.scan.index import InstanceRecord
from triage.dicom.scan.scan import scan_export
from triage.ingest.schedule import plan_series

pytestmark = pytest.mark.skipif(not codecs.direct_available(JPEG2000Lossless),
                                reason="pylibjpeg-openjpeg is not installed")


def summary(volume: object) -> tuple:
    """What a worker sends back: the volume's content in brief, or the error."""
    if isinstance(volume, Exception):
        return ("failed", type(volume).__name__, str(volume))
    return ("ok", volume.verdict.value, hashlib.sha256(volume.array.tobytes()).hexdigest(),
            volume.affine.round(9).tolist(), tuple(volume.warnings))


def _series(root: Path) -> list[list[InstanceRecord]]:
    by_uid: dict[str, list[InstanceRecord]] = defaultdict(list)
    for record in scan_export(root, workers=1).records:
        by_uid[record.series_uid].append(record)
    return [by_uid[uid] for uid in sorted(by_uid)]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    j2k = SeriesRecipe(transfer_syntax=JPEG2000Lossless, n_slices=10)
    for k in range(3):
        write_series(tmp_path, j2k.with_(seed=k, file_order="shuffled"), name=f"j2k{k}")
    write_series(tmp_path, SeriesRecipe(n_slices=6), name="native")
    return tmp_path


def _split_series(series: list[list[InstanceRecord]], workers: int) -> list[int]:
    return sorted({job.series for job in plan_series(series, workers) if job.parts > 1})


def test_a_split_series_loads_as_it_does_whole(export: Path) -> None:
    series = _series(export)
    assert len(_split_series(series, 2)) == 1, "three J2K series on two workers: one splits"
    inline = load_many(series, _options(), summary, workers=1)
    assert [s[0] for s in inline] == ["ok"] * 4
    assert load_many(series, _options(), summary, workers=2) == inline


def test_a_part_that_fails_to_decode_gives_the_whole_series_error(export: Path) -> None:
    (split,) = _split_series(_series(export), 2)
    broken = Path(_series(export)[split][3].path)
    data = bytearray(broken.read_bytes())
    siz = data.index(b"\xff\x4f\xff\x51") + 4
    data[siz:siz + 40] = bytes(40)  # an unreadable codestream header, the file intact
    broken.write_bytes(bytes(data))
    series = _series(export)
    assert _split_series(series, 2) == [split]
    inline = load_many(series, _options(), summary, workers=1)
    assert [s[0] for s in inline] == ["failed" if i == split else "ok" for i in range(4)]
    assert load_many(series, _options(), summary, workers=2) == inline


def test_one_long_series_is_decoded_by_all_workers(export: Path) -> None:
    (j2k, *_) = _series(export)
    assert load_many([j2k], _options(), summary, workers=2) == load_many(
        [j2k], _options(), summary, workers=1)


def _options():
    from triage.dicom.volume.loader import LoadOptions

    return LoadOptions()
