"""`ingest_export` and `triage ingest`: every study once, bad files reported, cache reused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from triage.cli import main
from triage.engines.runner import ingest_export
from triage.errors import ConfigError
from triage.ingest.config import IngestConfig
from triage.ingest.report import REPORT_COLUMNS, read_report
from triage.preprocess.cache import VolumeCache

# Tiny exports have 12 slices; a small output grid keeps the tests fast.
SMALL = {"selection": {"min_slices": 8},
         "preprocess": {"target_spacing": [8.0, 8.0, 8.0], "target_shape": [40, 40, 16]}}


@pytest.fixture
def config() -> IngestConfig:
    return IngestConfig.from_dict(SMALL)


@pytest.fixture
def export_with_junk(tiny_export, tmp_path) -> Path:
    """A copy of the tiny export plus every kind of bad file a real export contains."""
    root = tmp_path / "export"
    shutil.copytree(tiny_export.out_dir, root, symlinks=True)
    some_dicom = next(p for p in sorted(root.rglob("*")) if p.is_file() and p.name.startswith("IM"))
    bad = root / "BAD"
    bad.mkdir()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "corrupt").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    data = some_dicom.read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (bad / "notes.txt").write_text("not DICOM")
    (bad / "loop").symlink_to(root, target_is_directory=True)
    return root


def _expected_studies(summary) -> set[str]:
    return {s.study_uid for s in summary.studies}


def test_every_study_appears_once_and_bad_files_are_reported(
        tiny_export, export_with_junk, tmp_path, config):
    result = ingest_export(export_with_junk, tmp_path / "out", config, workers=1)
    rows = read_report(result.report_path)
    assert list(rows[0]) == REPORT_COLUMNS
    uids = [r["study_uid"] for r in rows]
    assert len(uids) == len(set(uids))
    real = {u for u in uids if not u.startswith("unreadable:")}
    # the truncated file keeps its study UID, so it joins its study instead of a pseudo-study
    assert real == _expected_studies(tiny_export)
    pseudo = {u for u in uids if u.startswith("unreadable:")}
    assert pseudo == {"unreadable:BAD/empty.dcm", "unreadable:BAD/corrupt", "unreadable:BAD/loop"}
    by_uid = {r["study_uid"]: r for r in rows}
    assert "zero-length file" in by_uid["unreadable:BAD/empty.dcm"]["reasons"]
    assert "symlink loop" in by_uid["unreadable:BAD/loop"]["reasons"]
    assert by_uid["unreadable:BAD/corrupt"]["stage"] == "scan"
    assert result.non_dicom >= 1
    assert result.summary["studies"] == len(rows)


def test_ok_studies_are_cached_with_trustworthy_geometry(tiny_export, tmp_path, config):
    result = ingest_export(tiny_export.out_dir, tmp_path / "out", config, workers=1)
    cache = VolumeCache(result.cache_dir)
    ok = [r for r in result.reports if r.status == "ok"]
    assert len(ok) >= len(tiny_export.studies) - 2  # the tiny export includes a gapped series
    for row in ok:
        prepared = cache.get(row.cache_key)
        assert prepared is not None
        assert prepared.shape == (40, 40, 16)
        assert prepared.provenance["study_uid"] == row.study_uid
        assert row.verdict in {"ok", "resampled-irregular", "tilt", "mixed-localizer"}
    for row in result.reports:
        if row.status == "failed" and row.stage == "load":
            assert row.verdict in {"gaps", "duplicates", "missing-positions", "malformed-values"}
            assert row.reasons
    stats = json.loads((result.out_dir / "device_stats.json").read_text())
    assert stats  # per-device statistics for later use (training perturbation)


def test_rerun_reuses_the_cache_and_config_change_invalidates(tiny_export, tmp_path, config):
    out = tmp_path / "out"
    first = ingest_export(tiny_export.out_dir, out, config, workers=1)
    second = ingest_export(tiny_export.out_dir, out, config, workers=1)
    ok_first = {r.study_uid: r for r in first.reports if r.status == "ok"}
    ok_second = {r.study_uid: r for r in second.reports if r.status == "ok"}
    assert ok_first.keys() == ok_second.keys()
    assert all(r.cache_hit for r in ok_second.values())
    assert all(ok_first[u].cache_key == ok_second[u].cache_key for u in ok_first)
    assert all(ok_first[u].verdict == ok_second[u].verdict for u in ok_first)

    changed = IngestConfig.from_dict({**SMALL, "preprocess": {**SMALL["preprocess"],
                                                              "ct_window": [-150.0, 250.0]}})
    third = ingest_export(tiny_export.out_dir, out, changed, workers=1)
    assert not any(r.cache_hit for r in third.reports)


def test_a_torn_cache_entry_is_remade(tiny_export, tmp_path, config):
    """Cache entries are not fsynced: after a power cut a sidecar may be empty; the next
    ingest remakes that entry instead of failing the study."""
    out = tmp_path / "out"
    first = ingest_export(tiny_export.out_dir, out, config, workers=1)
    torn = next(r for r in first.reports if r.status == "ok")
    sidecar = next(first.cache_dir.glob(f"??/{torn.cache_key}.json"))
    sidecar.write_bytes(b"")
    second = {r.study_uid: r for r in
              ingest_export(tiny_export.out_dir, out, config, workers=1).reports}
    assert second[torn.study_uid].status == "ok"
    assert not second[torn.study_uid].cache_hit
    assert VolumeCache(first.cache_dir).get(torn.cache_key) is not None


def test_parallel_equals_serial(tiny_export, tmp_path, config):
    serial = ingest_export(tiny_export.out_dir, tmp_path / "a", config, workers=1)
    parallel = ingest_export(tiny_export.out_dir, tmp_path / "b", config, workers=2)
    key = lambda r: (r.study_uid, r.status, r.verdict, r.cache_key, r.reasons)  # noqa: E731
    assert sorted(map(key, serial.reports)) == sorted(map(key, parallel.reports))


def test_cli_ingest_writes_report_and_json_summary(tiny_export, tmp_path, capsys):
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(json.dumps(SMALL))  # JSON is YAML
    code = main(["ingest", str(tiny_export.out_dir), "--out", str(tmp_path / "out"),
                 "--config", str(cfg), "--workers", "1", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["studies"] == len(tiny_export.studies)
    assert (tmp_path / "out" / "ingest_report.csv").is_file()


def test_cli_ingest_missing_export_is_a_clear_error(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist or is not a folder" in capsys.readouterr().err


def test_unknown_config_key_is_rejected_with_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'min_slices'"):
        IngestConfig.from_dict({"selection": {"min_slice": 3}})
    with pytest.raises(ConfigError, match="Unknown section 'preproces'"):
        IngestConfig.from_dict({"preproces": {}})


def test_shipped_default_config_loads():
    cfg = IngestConfig.from_yaml()
    assert cfg.selection.allowed_modalities == ("CT",)
    assert cfg.preprocess.target_shape == (96, 96, 48)
