"""`load_series(decoded=...)`: frames decoded elsewhere give exactly the plain load's volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from tests.dicom.loader_factory import SeriesRecipe, oblique_orientation, write_series
from triage.dicom.pixels import codecs
from triage.dicom.volume.loader import decode_stored, load_series
from triage.dicom.volume.model import Volume
from triage.errors import DicomError


def _assert_same(a: Volume, b: Volume) -> None:
    np.testing.assert_array_equal(a.array, b.array)
    assert a.array.dtype == b.array.dtype == np.float32
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.verdict is b.verdict
    assert a.warnings == b.warnings
    assert a.provenance == b.provenance


@pytest.mark.parametrize("recipe", [
    SeriesRecipe(transfer_syntax=JPEG2000Lossless, file_order="shuffled"),
    SeriesRecipe(transfer_syntax=RLELossless, descending=True),
    SeriesRecipe(orientation=oblique_orientation(12.0, 0.0), track=(0.0, 0.0, 1.0)),
], ids=["j2k-shuffled", "rle-descending", "native-tilt"])
def test_volume_from_parts_decoded_apart_equals_the_plain_load(tmp_path: Path,
                                                               recipe: SeriesRecipe) -> None:
    if recipe.transfer_syntax in (JPEG2000Lossless, RLELossless) and not (
            codecs.direct_available(recipe.transfer_syntax)):
        pytest.skip("pylibjpeg-openjpeg or pylibjpeg-rle is not installed")
    paths = write_series(tmp_path, recipe).paths
    half = len(paths) // 2
    decoded = {**decode_stored(paths[:half]), **decode_stored(paths[half:])}
    assert set(decoded) == {str(p) for p in paths}
    assert all(arr.shape == (1, recipe.rows, recipe.cols) for arr in decoded.values())
    _assert_same(load_series(paths, decoded=decoded), load_series(paths))


def test_some_files_decoded_apart_and_string_paths(tmp_path: Path) -> None:
    paths = [str(p) for p in write_series(tmp_path).paths]
    decoded = decode_stored(paths[:3])
    _assert_same(load_series(paths, decoded=decoded), load_series(paths))


def test_an_array_that_disagrees_with_its_header_is_ignored(tmp_path: Path) -> None:
    paths = write_series(tmp_path).paths
    decoded = decode_stored(paths)
    decoded[str(paths[2])] = np.zeros((1, 3, 3), dtype=np.int16)
    _assert_same(load_series(paths, decoded=decoded), load_series(paths))


def test_decode_stored_fails_like_load_series(tmp_path: Path) -> None:
    paths = write_series(tmp_path).paths
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 1000])
    message = r"IM0005\.dcm: PixelData holds .* truncated"
    with pytest.raises(DicomError, match=message):
        decode_stored(paths)
    with pytest.raises(DicomError, match=message):
        load_series(paths)
