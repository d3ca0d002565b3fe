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


def test_tree_pss_counts_pages_shared_after_fork_once(tmp_path):
    """A process that fills 200 MiB and forks a child that only waits: the tree's RSS sum
    counts the shared pages in both, its PSS sum once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from benchmarks.common import tree_memory_bytes

    script = ("import os, sys, time\n"
              "block = bytearray(200 * 2**20)\n"
              "for i in range(0, len(block), 4096): block[i] = 1\n"
              "if os.fork() == 0:\n    time.sleep(30); os._exit(0)\n"
              "print('ready', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        rss, pss = tree_memory_bytes(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the forked child too
        proc.wait()
    mib = 2 ** 20
    assert rss > 390 * mib  # 200 MiB in each of the two processes
    assert 195 * mib < pss < 290 * mib  # once, plus two interpreters' own pages


def test_tree_pss_is_withheld_when_the_tree_changes_while_read(monkeypatch):
    """A worker that exits after its share was read leaves its pages counted in full by
    the parent read next: a sample whose process set changed gives no PSS (RSS stays)."""
    import os

    from benchmarks import common

    trees = iter([{os.getpid()}, {os.getpid(), 999_999_999}])
    monkeypatch.setattr(common, "_tree", lambda root: next(trees))
    rss, pss = common.tree_memory_bytes(os.getpid())
    assert rss > 0 and pss is None
    monkeypatch.setattr(common, "_tree", lambda root: {os.getpid()})
    assert common.tree_memory_bytes(os.getpid())[1] > 0
