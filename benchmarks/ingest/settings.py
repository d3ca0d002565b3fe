"""The ingest benchmark's settings: defaults, the command line, and `BenchSettings`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ingest.tools import TOOLS, get_tool

DESCRIPTION = ("`make bench`: wall time and peak memory of triage's ingest against dcm2niix, "
               "SimpleITK, MONAI.")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "bench_output" / "ingest"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"
# Every profile whose transfer syntax this dcm2niix decodes (deltaform is JPEG-LS, and its
# deliberate slice gaps would fail triage's loads on purpose).
DEFAULT_DEVICES = ("acme", "borealis", "cygnus", "ember")
FULL = {"series": 12, "slices": 128, "matrix": 256, "repeats": 3}
# The per-syntax rows' names (`benchmarks.ingest.syntaxes.SYNTAXES`, kept import-free here).
SYNTAX_NAMES = ("explicit", "implicit", "rle", "jpeg2000", "jpegls")
QUICK = {"series": 4, "slices": 16, "matrix": 64, "repeats": 1}


@dataclass(frozen=True)
class BenchSettings:
    """One benchmark run, resolved from the command line.

    Attributes:
        series: CT series in the export (one study each, round-robin over `devices`).
        slices, matrix: slices per series and base matrix (scaled per device).
        devices: synthetic device profiles (see docs/synthetic_data.md).
        seed: generator seed.
        repeats: timed rounds; the table shows the median and the min-max spread.
        workers: worker counts tried for tools that run in parallel.
        tools: tool names, in table order.
        warmup: run one untimed round first.
        scaling: measure triage-ingest's peak memory on N and 2N series.
        syntaxes: transfer syntaxes (`benchmarks.ingest.syntaxes.SYNTAXES` names) to time
            dcm2niix and triage's full ingest on, one export each.
        out: bench folder (exports, per-run outputs, logs).
        doc: the markdown file to update, or None.
        timeout_s: a run taking longer is killed and reported as an error.
        command: the command line, as the report shows it.
    """

    series: int
    slices: int
    matrix: int
    devices: tuple[str, ...]
    seed: int
    repeats: int
    workers: tuple[int, ...]
    tools: tuple[str, ...]
    warmup: bool
    scaling: bool
    out: Path
    doc: Path | None
    timeout_s: float
    syntaxes: tuple[str, ...] = ()
    command: str = "python -m benchmarks.ingest.run"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _syntaxes(parser: argparse.ArgumentParser, text: str | None, quick: bool
              ) -> tuple[str, ...]:
    if text is None:
        return () if quick else SYNTAX_NAMES
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in SYNTAX_NAMES]
    if unknown:
        parser.error(f"unknown transfer syntax {unknown[0]!r}; valid: {', '.join(SYNTAX_NAMES)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> BenchSettings:
    """Resolve the command line; ``--quick`` changes the defaults, not explicit values."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest.run",
                                     description=DESCRIPTION)
    parser.add_argument("--series", type=int, help="series in the export (default 12)")
    parser.add_argument("--slices", type=int, help="slices per series (default 128)")
    parser.add_argument("--matrix", type=int, help="base matrix (default 256)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3)")
    parser.add_argument("--devices", default=",".join(DEFAULT_DEVICES),
                        help="synthetic device profiles (default: every profile whose "
                             "transfer syntax dcm2niix decodes)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--workers", type=_int_list, default=(1, 2),
                        help="worker counts for triage (default 1,2)")
    main_tools = ",".join(name for name, tool in TOOLS.items() if tool.main)
    parser.add_argument("--tools", default=main_tools,
                        help=f"tools of the main table (default: {main_tools})")
    parser.add_argument("--quick", action="store_true",
                        help="4 series x 16 slices of 64^2, one round, no warm-up, no "
                             "scaling, no doc unless --doc")
    parser.add_argument("--syntaxes",
                        help="comma-separated transfer syntaxes for the per-syntax rows, "
                             f"of {','.join(SYNTAX_NAMES)} (default: all; none with "
                             "--quick; 'none' to skip)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up round")
    parser.add_argument("--no-scaling", action="store_true", help="skip the N vs 2N runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="bench folder (default bench_output/ingest)")
    parser.add_argument("--doc", type=Path,
                        help="markdown file to update (default docs/benchmarks.md)")
    parser.add_argument("--no-doc", action="store_true", help="print the tables only")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a run is killed (default 900)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    for name in tools:
        try:
            get_tool(name)
        except ValueError as err:
            parser.error(str(err))
    settings = BenchSettings(
        series=args.series or sizes["series"], slices=args.slices or sizes["slices"],
        matrix=args.matrix or sizes["matrix"], repeats=args.repeats or sizes["repeats"],
        devices=tuple(d.strip() for d in args.devices.split(",") if d.strip()),
        seed=args.seed, workers=args.workers, tools=tools,
        warmup=not (args.quick or args.no_warmup),
        scaling=not (args.quick or args.no_scaling) and "triage-ingest" in tools,
        out=args.out.resolve(),
        doc=None if args.no_doc else (args.doc or (None if args.quick else DEFAULT_DOC)),
        timeout_s=args.timeout, syntaxes=_syntaxes(parser, args.syntaxes, args.quick),
        command=" ".join(["python -m benchmarks.ingest.run",
                          *(sys.argv[1:] if argv is None else argv)]))
    if min(settings.series, settings.slices, settings.matrix, settings.repeats) < 1:
        parser.error("--series, --slices, --matrix and --repeats must be positive.")
    return settings
