"""`read_instance` on real vendor files that bend the encoding rules."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest

from triage.dicom.scan.header import read_instance


def test_implicit_vr_pixel_data_in_an_explicit_vr_file_is_not_truncated(tmp_path: Path
                                                                       ) -> None:
    """SC_rgb_jpeg.dcm writes its (7FE0,0010) header without a VR inside an explicit-VR
    data set; pydicom reads it as implicit VR and decodes it. The scan did read the two
    bytes of the 32-bit length as a VR and reported "truncated: pixel data needs 65535
    bytes"."""
    path = Path(pydicom.data.get_testdata_file("SC_rgb_jpeg.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pydicom.dcmread(path).pixel_array.shape == (256, 256, 3)
    record = read_instance(path)
    assert record is not None
    assert record.error is None, record.error
    assert record.has_pixel_data and record.study_uid and record.series_uid


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmd.dcm", "CT_small.dcm"])
def test_explicit_vr_pixel_headers_still_read(name: str) -> None:
    record = read_instance(Path(pydicom.data.get_testdata_file(name)))
    assert record is not None and record.error is None and record.has_pixel_data
