"""The PACS benchmark's section: percentiles, the throughput ratio and its verdict."""

from __future__ import annotations

import math

from benchmarks.pacs.measure import ListenResult, RunResult
from benchmarks.pacs.report import Context, percentile, section, throughput_ratio

CTX = Context("python -m benchmarks.pacs.run --studies 4", "2026-01-01 00:00 UTC", "a CPU",
              "pynetdicom 3", 4, 16, 2)


def _listen(reported: int = 4) -> ListenResult:
    return ListenResult(4, reported, 64, 2.0, 3.0, 12.0, (0.5, 1.0, 1.5, 4.0)[:reported],
                        512.0)


def _runs(web_rate: float) -> tuple[RunResult, RunResult]:
    return (RunResult("folder", 4, 20.0, 4.0, 60.0, 0),
            RunResult("dicomweb", 4, 22.0, 5.0, web_rate, 0))


def test_percentile_interpolates_and_is_nan_when_empty():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 4.8
    assert math.isnan(percentile([], 50))


def test_ratio_and_verdicts():
    folder, web = _runs(54.0)
    assert throughput_ratio(folder, web) == 0.9
    text = section(CTX, _listen(), folder, web)
    assert "| 4 | 4 | 64 | 3.0 | 12.0 | 20.0 | 1.25 | 3.62 | 4.00 | 512 |" in text
    assert "| dicomweb | 4 | 22.0 | 5.0 | 54.0 | 0 |" in text
    assert "Throughput ratio DICOMweb / folder: 0.90 (target ≥ 0.8): met." in text
    assert "did not reach" not in text
    text = section(CTX, _listen(reported=3), *_runs(30.0))
    assert "0.50 (target ≥ 0.8): **missed**." in text
    assert "1 of 4 SRs did not reach Orthanc before the timeout." in text


def test_unknown_figures_show_as_a_dash():
    folder = RunResult("folder", 0, 5.0, math.nan, math.nan, 1)
    text = section(CTX, ListenResult(4, 0, 64, 2.0, 3.0, math.nan, (), 100.0), folder,
                   folder)
    assert "ratio DICOMweb / folder: – (target ≥ 0.8): –." in text
    assert "| 4 | 0 | 64 | 3.0 | – | – | – | – | – | 100 |" in text
