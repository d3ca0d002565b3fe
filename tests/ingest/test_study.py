"""`ingest_study` report rows of failed studies: modality and device group still filled."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from triage.engines.runner import SUMMARY_NAME, ingest_export
from triage.ingest.config import IngestConfig
from triage.ingest.report import read_report


def test_failed_rows_name_modality_and_one_unknown_device_spelling(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name in ("MR_small.dcm", "CT_small.dcm"):  # MR: not allowed; CT: one slice
        (export / name).write_bytes(Path(pydicom.data.get_testdata_file(name)).read_bytes())
    (export / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 40)
    config = IngestConfig.from_dict({"selection": {"min_slices": 2}})
    result = ingest_export(export, tmp_path / "out", config, workers=1)
    rows = read_report(result.report_path)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"failed"}
    by_modality = {r["modality"]: r for r in rows}
    assert set(by_modality) == {"MR", "CT", ""}
    assert by_modality["MR"]["stage"] == "selection" and by_modality[""]["stage"] == "scan"
    assert by_modality[""]["device_group"] == "unknown"
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text(encoding="utf-8"))
    assert "(unknown)" not in summary["device_group"]
    assert summary["device_group"]["unknown"] >= 1
