"""`make bench`: wall time and peak memory of triage's ingest against dcm2niix, SimpleITK, MONAI.

Generates one synthetic CT export (cached under ``bench_output/ingest/exports``), then times
every tool of `benchmarks.ingest.tools` on it, each run in a fresh subprocess: wall time
around the process (interpreter start and imports included), peak RSS from ``os.wait4``,
the summed RSS of the process tree sampled every 50 ms, and the tool's own in-process
time. One untimed warm-up round puts every file in the page cache for all tools alike;
the timed rounds then run the tools round-robin. The same rounds then run dcm2niix,
triage's load and triage's OpenJPEG calls alone on the JPEG 2000 series only, and the
first two on the same series rewritten uncompressed (`benchmarks.ingest.share`). Then
dcm2niix and triage's full ingest on one export per transfer syntax, same pixels
(`benchmarks.ingest.syntaxes`).
Triage's memory scaling is measured on N and 2N series.
The tables go to stdout and, between the ``ingest`` markers, to ``docs/benchmarks.md``::

    python -m benchmarks.ingest.run                    # 12 series x 128 slices of 256^2
    python -m benchmarks.ingest.run --quick --doc /tmp/bench.md

The harness imports only the standard library while it measures: a child inherits the
harness's peak RSS until it execs, so a large harness would put a floor under every
memory figure (the floor is reported).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence

from benchmarks.common import harness_peak_mib
from benchmarks.ingest.doc import BEGIN, DOC_INTRO, END, render, write_section
from benchmarks.ingest.measure import Row
from benchmarks.ingest.rounds import compile_sources, ensure_export, run_rounds, run_scaling
from benchmarks.ingest.settings import parse_args
from benchmarks.ingest.share import SPLIT_TOOLS, jpeg2000_view, share_rows, uncompressed_copy
from benchmarks.ingest.syntaxes import run_syntaxes
from benchmarks.ingest.tools import get_tool

__all__ = ["BEGIN", "DOC_INTRO", "END", "main", "parse_args", "write_section"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables, update the doc.

    Returns:
        0; 1 when a run failed (the tables still show every tool); 2 when the export
        could not be generated.
    """
    from triage.errors import TriageError  # no dependencies: keeps the harness small

    settings = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        export = ensure_export(settings, settings.series)
    except TriageError as err:  # e.g. an unknown --devices name, with the valid ones
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows, skipped = [], {}
    for name in settings.tools:
        tool = get_tool(name)
        reason = tool.unavailable()
        if reason:
            skipped[name] = reason
            continue
        rows.extend(Row(tool, workers) for workers in
                    (settings.workers if tool.parallel else (1,)))
    compile_sources()
    run_rounds(settings, export, rows)
    share = None
    view = (jpeg2000_view(export, settings.out)
            if {"dcm2niix", "triage-load"} <= set(settings.tools) else None)
    if view is not None:
        split = share_rows(SPLIT_TOOLS)
        share = (share_rows(), view[1], split)
        run_rounds(settings, view[0], share[0], prefix="jpeg2000-")
        run_rounds(settings, uncompressed_copy(view[0], settings.out), split,
                   prefix="jpeg2000-uncompressed-")
    syntaxes = run_syntaxes(settings) if settings.syntaxes else {}
    scaling = run_scaling(settings, export) if settings.scaling else []
    shutil.rmtree(settings.out / "runs", ignore_errors=True)
    section = render(settings, export, rows, skipped, scaling,
                     elapsed_s=time.perf_counter() - started, floor_mib=harness_peak_mib(),
                     load_before=load_before, share=share, syntaxes=syntaxes)
    print(section)
    if settings.doc is not None:
        write_section(settings.doc, section)
        print(f"wrote the ingest section of {settings.doc}")
    breakdown = share[0] + share[2] if share else []
    # dcm2niix may fail on a syntax it cannot decode: not an error of the benchmark
    breakdown += [row for found in syntaxes.values() for row in list(found)[1:]]
    runs = [run for row in rows + breakdown for run in row.runs]
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
