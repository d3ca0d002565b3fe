"""The one writer of docs/benchmarks.md sections, through every benchmark's entry point."""

from __future__ import annotations

import pytest

from benchmarks.ingest import doc as ingest_doc
from benchmarks.quality import run as quality
from benchmarks.run import report as run_report
from benchmarks.triage import report as triage_report

OTHER = "<!-- other:begin -->\nkept\n<!-- other:end -->"
WRITERS = [
    ("ingest", lambda text, path: ingest_doc.write_section(path, text), ingest_doc.BEGIN,
     ingest_doc.END),
    ("quality", quality.write_doc, quality.BEGIN, quality.END),
    ("run", run_report.write_doc, run_report.BEGIN, run_report.END),
    ("triage", triage_report.write_doc, triage_report.BEGIN, triage_report.END),
]


@pytest.mark.parametrize("name, write, begin, end", WRITERS, ids=[w[0] for w in WRITERS])
def test_each_benchmark_replaces_only_its_own_section(tmp_path, name, write, begin, end):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{OTHER}\n", encoding="utf-8")
    write("first", doc)
    write("second", doc)
    text = doc.read_text(encoding="utf-8")
    assert text.count(begin) == 1 and f"{begin}\nsecond\n{end}" in text
    assert text.startswith("# Benchmarks\n\nintro\n") and OTHER in text and "first" not in text
    assert not list(tmp_path.glob(".*.tmp"))  # replaced atomically, nothing left behind
