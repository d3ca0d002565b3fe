"""The per-syntax rows of the ingest benchmark: options, the table, the JPEG-LS fallback."""

from __future__ import annotations

import pytest

from benchmarks.ingest.measure import Measured, Row
from benchmarks.ingest.settings import SYNTAX_NAMES, parse_args
from benchmarks.ingest.syntaxes import SYNTAXES, SyntaxRows, syntax_table
from benchmarks.ingest.tools import ToolResult, get_tool


def _row(tool: str, walls: list[float], series: int = 2) -> Row:
    return Row(get_tool(tool), 1, [
        Measured(w, 10.0, 10.0, ToolResult(tool, 1, w * 0.8, series)) for w in walls])


def test_syntax_names_match_the_table_and_default_to_all():
    assert tuple(SYNTAXES) == SYNTAX_NAMES
    assert parse_args([]).syntaxes == SYNTAX_NAMES
    assert parse_args(["--quick"]).syntaxes == ()
    assert parse_args(["--syntaxes", "rle,jpegls"]).syntaxes == ("rle", "jpegls")
    assert parse_args(["--syntaxes", "none"]).syntaxes == ()


def test_an_unknown_syntax_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--syntaxes", "jpeg"])
    assert "unknown transfer syntax 'jpeg'; valid: explicit," in capsys.readouterr().err


def test_table_judges_each_syntax_round_by_round_and_falls_back_for_jpegls():
    results = {
        "explicit": SyntaxRows(_row("dcm2niix", [1.0, 2.0, 1.0]),
                               _row("triage-ingest", [1.5, 3.0, 2.5])),
        "jpegls": SyntaxRows(_row("dcm2niix", [0.1, 0.1, 0.1], series=0),
                             _row("triage-ingest", [1.8, 2.0, 1.9])),
    }
    lines = syntax_table(results, series=2)
    assert lines[0].startswith("| transfer syntax | dcm2niix wall s")
    explicit, jpegls = lines[2], lines[3]
    assert ("| Explicit VR Little Endian | 1.00 (1.00–2.00) | 2.50 (1.50–3.00) (2/2 ok) |"
            in explicit)
    assert "| 2.50 | 1.50–2.50×, 1 of 3 above 2× | ≤ 2× | **missed** (2.50×) |" in explicit
    assert "| JPEG-LS Lossless | produced no volume |" in jpegls
    assert "met (1.90×) (dcm2niix here cannot decode it" in jpegls


def test_the_mixed_export_row_comes_first():
    mixed = (_row("dcm2niix", [2.0, 2.0]), _row("triage-ingest", [3.0, 3.0]))
    lines = syntax_table({"rle": SyntaxRows(_row("dcm2niix", [1.0]),
                                            _row("triage-ingest", [1.5]))}, 2, mixed)
    assert lines[2].startswith("| mixed (the main table's export) | 2.00 (2.00–2.00) |")
    assert "met (1.50×)" in lines[2] and lines[3].startswith("| RLE Lossless |")


def test_a_syntax_dcm2niix_cannot_decode_is_judged_against_an_estimate_and_sitk():
    # dcm2niix's Explicit VR time plus the decoder alone (in-process: 0.8 x wall here),
    # round by round: 1.0 + 0.4, 1.2 + 0.4, 1.0 + 0.4 -> 1.4, 1.6, 1.4 s.
    results = {
        "explicit": SyntaxRows(_row("dcm2niix", [1.0, 1.2, 1.0]),
                               _row("triage-ingest", [1.5, 1.5, 1.5])),
        "jpegls": SyntaxRows(_row("dcm2niix", [0.1, 0.1, 0.1], series=0),
                             _row("triage-ingest", [2.8, 3.0, 3.2]),
                             {"sitk": _row("sitk", [3.0, 3.0, 3.0]),
                              "charls-decode": _row("charls-decode", [0.5, 0.5, 0.5])}),
    }
    jpegls = syntax_table(results, series=2)[3]
    assert "| 2.14 | 1.88–2.29×, 1 of 3 above 2× | ≤ 2× | **missed** (2.14×) against an " \
           "estimate" in jpegls  # 3.0 / 1.4
    assert "Explicit VR (1.00 s) plus the decoder alone on the frames (0.40 s)" in jpegls
    assert "SimpleITK (GDCM, CharLS) on the same series: 3.00 s wall, triage 1.00× it" in jpegls


def test_without_the_decode_row_the_explicit_time_stays_the_reference():
    results = {
        "explicit": SyntaxRows(_row("dcm2niix", [1.0]), _row("triage-ingest", [1.5])),
        "jpegls": SyntaxRows(_row("dcm2niix", [0.1], series=0), _row("triage-ingest", [1.9]),
                             {"charls-decode": Row(get_tool("charls-decode"), 1)}),
    }
    assert "met (1.90×) (dcm2niix here cannot decode it" in syntax_table(results, 2)[3]
