"""Smoke tests of the ingest benchmark: every tool once on a tiny export, no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from benchmarks.ingest import run, tools

REPO = Path(__file__).resolve().parents[2]
OTHER_SECTION = "<!-- other:begin -->\n## Other benchmark\nkept as is\n<!-- other:end -->"


def test_quick_run_writes_a_row_per_tool_and_only_its_section(tmp_path: Path) -> None:
    """`--quick` as `make bench` starts it, into a doc with a stale section and another one.

    One test, not a module fixture shared by several: with xdist each worker would run
    the harness again.
    """
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{run.BEGIN}\nstale figures\n{run.END}\n\n"
                   f"{OTHER_SECTION}\n", encoding="utf-8")
    # workers=1 only: a second triage-ingest run would import MONAI again for ~6 s; the
    # parallel paths are covered by the tests of the tool functions below.
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest.run", "--quick", "--workers", "1",
         "--out", str(tmp_path / "out"), "--doc", str(doc)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    lines = completed.stdout.splitlines()
    assert "| tool | workers | wall s, median (min–max) | in-process s" in completed.stdout
    for tool in (t for t in tools.TOOLS.values() if t.main):
        rows = [line for line in lines if line.startswith(f"| {tool.label} | 1 |")
                or line.startswith(f"| {tool.label} | | skipped")]
        assert len(rows) == 1, f"{tool.name}: {rows}"
        reason = tool.unavailable()
        if reason:
            assert f"skipped: {reason}" in rows[0]
        else:
            assert "| 4/4 series" in rows[0] and "error" not in rows[0], rows[0]
    load = next(line for line in lines if line.startswith("| triage load-to-volume | 1 |"))
    if tools.get_tool("dcm2niix").unavailable() is None:
        assert "(a) ≤ 1× dcm2niix" in load
        assert "dcm2niix met" in load or "dcm2niix **missed**" in load

    if tools.get_tool("dcm2niix").unavailable() is None:  # the JPEG 2000 breakdown
        share = completed.stdout.split("Where the time goes: the export's 1 JPEG 2000 "
                                       "series alone")[1]
        assert "| dcm2niix | " in share and "| 1.00× |" in share
        assert "| triage load-to-volume | " in share and "| 1 series |" in share
        assert "| OpenJPEG decode only (triage's calls) | " in share
        assert "| 16 frames decoded |" in share  # the cygnus series: 16 slices
        # split by the uncompressed copy: both tools ran on it, the decoder alone did not
        assert "| same series uncompressed: wall s | decoding: the difference, s |" in share
        copy_cells = [line.split(" | ")[4] for line in share.splitlines()
                      if line.startswith(("| dcm2niix | ", "| triage load-to-volume | ",
                                          "| OpenJPEG decode only"))]
        assert copy_cells[-1] == "–" and all(float(c) > 0 for c in copy_cells[:2])
        assert "Split by the uncompressed copy: decoding" in share

    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert "stale figures" not in text
    assert text.count(run.BEGIN) == text.count(run.END) == 1
    assert "## Ingest: DICOM export → volumes" in text
    assert OTHER_SECTION in text


def test_write_section_creates_the_doc_with_its_intro(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "benchmarks.md"
    run.write_section(doc, "## Ingest\nfigures\n")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith(run.DOC_INTRO.rstrip("\n"))
    assert text.endswith(f"{run.BEGIN}\n## Ingest\nfigures\n{run.END}\n")


def test_write_section_appends_to_a_doc_without_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written\n", encoding="utf-8")
    run.write_section(doc, "## Ingest")
    run.write_section(doc, "## Ingest again")
    text = doc.read_text(encoding="utf-8")
    assert text == f"# Benchmarks\n\nhand-written\n\n{run.BEGIN}\n## Ingest again\n{run.END}\n"


def test_get_tool_rejects_an_unknown_name_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown benchmark tool 'sitkk'; valid tools: "
                                         r"dcm2niix, .*Did you mean 'sitk'\?"):
        tools.get_tool("sitkk")


def test_tool_result_round_trips_through_its_json_line() -> None:
    result = tools.ToolResult("sitk", 1, 0.5, 3, 1, {"itk_threads": 2})
    stdout = f"some log line\n{result.to_json()}\n"
    assert tools.ToolResult.from_output(stdout) == result
    assert json.loads(result.to_json())["series"] == 3
    with pytest.raises(ValueError, match="no JSON result line"):
        tools.ToolResult.from_output("only a log\n")


def test_dcm2niix_result_counts_volumes_and_reads_its_time(tmp_path: Path) -> None:
    for name in ("2_a.nii", "2_b.nii", "2_b_Tilt_1.nii", "2_b.json"):
        (tmp_path / name).touch()
    log = "Convert 16 DICOM as ...\nConversion required 0.251 seconds (0.24 for core code).\n"
    result = tools.dcm2niix_result(log, tmp_path)
    assert (result.series, result.seconds, result.detail) == (2, 0.251, {"tilt_reslices": 1})


def test_triage_load_in_worker_processes(make_synth_export, tmp_path: Path) -> None:
    summary = make_synth_export(studies=2, slices=16, matrix=32, devices=("acme", "borealis"),
                                thick_fraction=0.0)
    result = tools.run_triage_load(summary.out_dir, tmp_path / "out", 2)
    assert (result.tool, result.workers, result.series, result.failed) == (
        "triage-load", 2, 2, 0)
    assert result.detail["verdicts"] == {"ok": 2}


@pytest.mark.skipif(tools.get_tool("dcm2niix").unavailable() is not None,
                    reason="dcm2niix is not installed")
def test_dcm2niix_one_process_per_series_folder(make_synth_export, tmp_path: Path) -> None:
    summary = make_synth_export(studies=2, slices=8, matrix=32, devices=("acme", "borealis"),
                                thick_fraction=0.0)
    result = tools.run_dcm2niix(summary.out_dir, tmp_path, 2)
    assert (result.tool, result.workers, result.series, result.failed) == ("dcm2niix", 2, 2, 0)
    assert result.seconds > 0


def test_jpeg2000_view_links_only_the_jpeg2000_series(make_synth_export, tmp_path: Path
                                                      ) -> None:
    from benchmarks.ingest.share import jpeg2000_view, uncompressed_copy

    summary = make_synth_export(studies=3, slices=8, matrix=32,
                                devices=("acme", "cygnus", "borealis"), thick_fraction=0.0)
    view, n_series = jpeg2000_view(summary.out_dir, tmp_path)
    assert n_series == 1 and len(list(view.iterdir())) == 1
    (link,) = view.iterdir()
    assert not link.is_symlink() and len(list(link.iterdir())) == 8
    assert all(not f.is_symlink() and f.stat().st_nlink == 2 for f in link.iterdir())
    assert jpeg2000_view(summary.out_dir, tmp_path)[0] == view  # rebuilt, not duplicated
    result = tools.run_openjpeg_decode(view, tmp_path / "out", 1)
    assert (result.series, result.failed, result.detail) == (1, 0, {"frames": 8})
    # triage scans the view as an export of its own (it follows no symlink out of one)
    from triage.dicom.scan.scan import scan_export

    scanned = scan_export(view, workers=1)
    assert len(scanned.records) == 8 and scanned.ignored == ()
    # every syntax but JPEG 2000 is skipped
    whole = tools.run_openjpeg_decode(summary.out_dir, tmp_path / "out", 1)
    assert whole.detail == {"frames": 8} and whole.series == 3
    copy = uncompressed_copy(view, tmp_path)
    (folder,) = copy.iterdir()
    assert folder.name == link.name
    for original in sorted(link.iterdir()):
        plain = pydicom.dcmread(folder / original.name)
        assert plain.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        source = pydicom.dcmread(original)
        assert plain.SOPInstanceUID == source.SOPInstanceUID
        np.testing.assert_array_equal(plain.pixel_array, source.pixel_array)
    acme_only = make_synth_export("acme-only", studies=1, slices=8, matrix=32, devices=("acme",),
                                  thick_fraction=0.0)
    assert jpeg2000_view(acme_only.out_dir, tmp_path) is None
