"""Hostile pixel data and headers end to end: each study gets its row, the batch goes on."""

from __future__ import annotations

import pytest
from pydicom.uid import RLELossless

from tests.dicom.factories import ACME, scramble_last_fragment, study_header, write_ct_series
from triage.engines.runner import ingest_export
from triage.ingest.config import IngestConfig
from triage.ingest.report import read_report

SMALL = {"selection": {"min_slices": 4},
         "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [8, 8, 4]}}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decoder_panic_fails_its_study_and_the_batch_goes_on(tmp_path, workers):
    """pylibjpeg-rle's panic is a BaseException: it stopped the batch inline (no report at
    all) and, from a worker, came back as an unpicklable 'internal error'."""
    root = tmp_path / "export"
    write_ct_series(root / "good", study_header("good"), ACME, "good", slices=6)
    bad = write_ct_series(root / "bad", study_header("bad"), ACME, "bad", slices=6,
                          transfer_syntax=RLELossless)
    scramble_last_fragment(bad[2])
    result = ingest_export(root, tmp_path / "out", IngestConfig.from_dict(SMALL),
                           workers=workers)
    rows = {r["study_uid"]: r for r in read_report(result.report_path)}
    assert len(rows) == 2
    good, failed = rows[study_header("good").study_uid], rows[study_header("bad").study_uid]
    assert good["status"] == "ok"
    assert (failed["status"], failed["stage"]) == ("failed", "load")
    assert failed["reasons"].startswith("bad/IM0002.dcm: Decoding the RLE Lossless pixel "
                                        "data failed (PanicException: ")


def test_a_slice_step_of_100_m_is_refused_without_resampling_it(tmp_path):
    root = tmp_path / "export"

    def far_apart(ds, k):
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, k * 1e5]

    write_ct_series(root / "far", study_header("far"), ACME, "far", slices=6, edit=far_apart)
    result = ingest_export(root, tmp_path / "out", IngestConfig.from_dict(SMALL), workers=1)
    (row,) = read_report(result.report_path)
    assert (row["status"], row["stage"], row["verdict"]) == (
        "failed", "load", "malformed-values")
    assert "the slice step is 100000 mm, outside [0.05, 30] mm" in row["reasons"]
