"""The per-syntax rows of the ingest benchmark: options, the table, the JPEG-LS fallback."""

from __future__ import annotations

import pytest

from benchmarks.ingest.measure import Measured, Row
from benchmarks.ingest.settings import SYNTAX_NAMES, parse_args
from benchmarks.ingest.syntaxes import SYNTAXES, syntax_table
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
        "explicit": (_row("dcm2niix", [1.0, 2.0, 1.0]), _row("triage-ingest", [1.5, 3.0, 2.5])),
        "jpegls": (_row("dcm2niix", [0.1, 0.1, 0.1], series=0),
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
    lines = syntax_table({"rle": (_row("dcm2niix", [1.0]), _row("triage-ingest", [1.5]))}, 2,
                         mixed)
    assert lines[2].startswith("| mixed (the main table's export) | 2.00 (2.00–2.00) |")
    assert "met (1.50×)" in lines[2] and lines[3].startswith("| RLE Lossless |")
