"""`make bench-guarantee`: guarantee modes over calibration redraws and the feedback loop.

Simulated scores with the triage benchmark's measured distributions (`pool`): what `pac`
and `marginal` clear, send to review and promise per stratification at 50-1000
calibration positives per device (`redraw`), and a day-by-day simulation of the review
feedback loop (`loop`). Writes ``bench_output/guarantee/results.json`` and, between the
``guarantee`` markers, ``docs/benchmarks.md``. A few CPU minutes::

    python -m benchmarks.guarantee.run
    python -m benchmarks.guarantee.run --quick --doc /tmp/g.md     # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_marked_section
from benchmarks.guarantee import loop, redraw, report
from benchmarks.guarantee.pool import DEVICES

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- guarantee:begin -->", "<!-- guarantee:end -->"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def collect(draws: int, sizes: tuple[int, ...], days: int, per_day: int, replicates: int,
            audits: tuple[float, ...]) -> dict[str, Any]:
    """Run both parts; the JSON-ready results `report.render` reads."""
    start, cpu, load = time.perf_counter(), _cpu(), os.getloadavg()[0]
    cells = redraw.run_grid(draws, sizes)
    loops = []
    for mode in redraw.MODES:
        for stratify in redraw.STRATIFY:
            for audit in audits:
                reps = [loop.summarize(loop.simulate(loop.LoopSettings(
                    mode, stratify, audit, days=days, per_day=per_day, seed=seed)))
                    for seed in range(replicates)]
                loops.append({"settings": reps[0]["settings"], "replicates": reps})
    cfg = redraw.config("pac", "device")
    return {"meta": {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                     "seconds": time.perf_counter() - start, "cpu_seconds": _cpu() - cpu,
                     "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})",
                     "load": [load, os.getloadavg()[0]], "draws": draws,
                     "alpha": cfg.alpha, "delta": cfg.delta},
            "devices": {d.name: {"d": d.d, "b": d.b} for d in DEVICES},
            "redraw": cells, "loop": loops}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--per-day", type=int, default=100, help="studies per device per day")
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke run (seconds)")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench_output" / "guarantee" / "results.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws, args.days, args.replicates = 10, 60, 1
    results = _jsonable(collect(args.draws, redraw.SIZES, args.days, args.per_day,
                                args.replicates, (0.05, 0.1)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    write_marked_section(args.doc, BEGIN, END, report.render(results))
    print(f"wrote {args.doc} and {args.out} ({results['meta']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
