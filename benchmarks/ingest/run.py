"""`make bench`: wall time and peak memory of triage's ingest against dcm2niix, SimpleITK, MONAI.

Generates one synthetic CT export (cached under ``bench_output/ingest/exports``), then times
every tool of `benchmarks.ingest.tools` on it, each run in a fresh subprocess: wall time
around the process (interpreter start and imports included), peak RSS from ``os.wait4``,
the summed RSS of the process tree sampled every 50 ms, and the tool's own in-process
time. One untimed warm-up round puts every file in the page cache for all tools alike;
the timed rounds then run the tools round-robin. Triage's memory scaling is measured on
N and 2N series. The tables go to stdout and, between the ``ingest`` markers, to
``docs/benchmarks.md``::

    python -m benchmarks.ingest.run                    # 12 series x 128 slices of 256^2
    python -m benchmarks.ingest.run --quick --doc /tmp/bench.md

The harness imports only the standard library while it measures: a child inherits the
harness's peak RSS until it execs, so a large harness would put a floor under every
memory figure (the floor is reported).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.ingest.tools import TOOLS, Tool, ToolResult, get_tool

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "bench_output" / "ingest"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"
# Every profile whose transfer syntax this dcm2niix decodes (deltaform is JPEG-LS, and its
# deliberate slice gaps would fail triage's loads on purpose).
DEFAULT_DEVICES = ("acme", "borealis", "cygnus", "ember")
FULL = {"series": 12, "slices": 128, "matrix": 256, "repeats": 3}
QUICK = {"series": 4, "slices": 16, "matrix": 64, "repeats": 1}
SAMPLE_INTERVAL_S = 0.05
RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB


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
    command: str = "python -m benchmarks.ingest.run"


@dataclass(frozen=True)
class Measured:
    """One timed run of one tool.

    Attributes:
        wall_s: wall time around the subprocess.
        maxrss_mib: ``ru_maxrss`` from ``wait4``: the largest single process of the tree.
        tree_mib: peak of the sampled RSS sum over the process and its descendants.
        result: what the tool reported, or None when it failed.
        error: why it failed, naming its logs.
    """

    wall_s: float
    maxrss_mib: float
    tree_mib: float
    result: ToolResult | None
    error: str | None = None


@dataclass
class Row:
    """The timed runs of one tool at one worker count."""

    tool: Tool
    workers: int
    runs: list[Measured] = field(default_factory=list)

    @property
    def ok(self) -> list[Measured]:
        """Runs that finished and reported a result."""
        return [run for run in self.runs if run.result is not None]

    @property
    def wall(self) -> float:
        """Median wall seconds of the successful runs (NaN if none)."""
        return _median([run.wall_s for run in self.ok])

    @property
    def in_process(self) -> float:
        """Median in-process seconds of the successful runs (NaN if none)."""
        return _median([run.result.seconds for run in self.ok if run.result])


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _tree_rss_bytes(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc (0 where unavailable)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - tree
        tree |= frontier
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        while True:
            self.peak = max(self.peak, _tree_rss_bytes(self.pid))
            if self._stop_event.wait(SAMPLE_INTERVAL_S):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(tool: Tool, export: Path, run_dir: Path, workers: int, log_stem: Path,
            timeout_s: float) -> Measured:
    """Run `tool` once in a fresh subprocess; time it and record its peak memory.

    `run_dir` is emptied first; stdout and stderr go to ``<log_stem>.out`` and ``.err``.
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out_log, err_log = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    with out_log.open("wb") as out, err_log.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(tool.command(export, run_dir, workers), stdout=out,
                                stderr=err, cwd=REPO, env=env)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        finally:
            wall = time.perf_counter() - started
            killer.cancel()
            sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    maxrss, tree = usage.ru_maxrss * RSS_UNIT / 2**20, sampler.peak / 2**20
    if proc.returncode != 0:
        return Measured(wall, maxrss, tree, None,
                        f"exit status {proc.returncode}; see {err_log}")
    try:
        result = tool.result(out_log.read_text(errors="replace"), run_dir, workers)
    except ValueError as err:
        return Measured(wall, maxrss, tree, None, f"{err} ({err_log})")
    return Measured(wall, maxrss, tree, result)


def _generate(export: Path, config: dict[str, Any]) -> str:
    """Write one synthetic export (runs in a spawned process; see `ensure_export`)."""
    from triage.data.synth import SynthConfig, generate_export

    summary = generate_export(export, SynthConfig(**config),
                              workers=min(2, os.cpu_count() or 1))
    return f"{summary.n_files} files in {summary.seconds:.1f} s"


def ensure_export(settings: BenchSettings, series: int) -> Path:
    """The export with `series` series at the settings' sizes, generated once and reused.

    The generator runs in a spawned process so that the harness stays small.
    """
    name = (f"ct{series}x{settings.slices}x{settings.matrix}-{'+'.join(settings.devices)}"
            f"-seed{settings.seed}")
    export = settings.out / "exports" / name
    done = export.with_name(name + ".complete")
    if done.exists() and export.is_dir():
        return export
    shutil.rmtree(export, ignore_errors=True)
    print(f"generating {export} ...", flush=True)
    config = {"studies": series, "seed": settings.seed, "slices": settings.slices,
              "matrix": settings.matrix, "devices": settings.devices, "extras": False,
              "thick_fraction": 0.0}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        done.write_text(pool.submit(_generate, export, config).result() + "\n",
                        encoding="utf-8")
    return export


def _timed(settings: BenchSettings, tool: Tool, export: Path, workers: int, stem: str,
           label: str) -> Measured:
    """`measure` with the bench folder's layout, removing the run's output afterwards."""
    run_dir = settings.out / "runs" / stem
    measured = measure(tool, export, run_dir, workers, settings.out / "logs" / stem,
                       settings.timeout_s)
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{label:>12}  {stem:<24} {measured.wall_s:7.2f} s {measured.maxrss_mib:7.0f} MiB "
          f"{measured.tree_mib:7.0f} MiB tree  {measured.error or ''}", flush=True)
    return measured


def run_rounds(settings: BenchSettings, export: Path, rows: list[Row]) -> None:
    """The optional warm-up round, then `settings.repeats` timed rounds, round-robin."""
    shutil.rmtree(settings.out / "logs", ignore_errors=True)
    rounds = ([0] if settings.warmup else []) + list(range(1, settings.repeats + 1))
    for number in rounds:
        label = "warm-up" if number == 0 else f"round {number}/{settings.repeats}"
        for row in rows:
            stem = f"{row.tool.name}-w{row.workers}-r{number}"
            measured = _timed(settings, row.tool, export, row.workers, stem, label)
            if number:
                row.runs.append(measured)


def run_scaling(settings: BenchSettings, export: Path) -> list[tuple[int, Measured, Measured]]:
    """triage-ingest once on N and once on 2N series, for each worker count."""
    tool = get_tool("triage-ingest")
    double = ensure_export(settings, 2 * settings.series)
    pairs = []
    for workers in settings.workers:
        small, large = (_timed(settings, tool, folder, workers,
                               f"scaling-{size}series-w{workers}", "scaling")
                        for size, folder in ((settings.series, export),
                                             (2 * settings.series, double)))
        pairs.append((workers, small, large))
    return pairs


def harness_peak_mib() -> float:
    """The harness's own peak RSS: the floor under every child's ``ru_maxrss``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20


# ---- the report: markdown tables and the docs/benchmarks.md section ----------------------

BEGIN, END = "<!-- ingest:begin -->", "<!-- ingest:end -->"
TARGETS = {"triage-load": ("(a)", 1.0), "triage-ingest": ("(b)", 2.0)}
MONAI_FACTOR = 0.5  # "clearly faster than MONAI": at most half its wall time
SCALING_LIMIT = 1.25  # "bounded by a few series": 2N series at most 1.25x the peak of N
DOC_INTRO = """# Benchmarks

Speed and memory of triage against the tools its users would otherwise reach for, measured
by `make bench` on synthetic exports (`triage synth`, docs/synthetic_data.md). Each section
is written by its benchmark between its own markers and replaced on every run: the figures
are whatever the last run measured, missed targets included.

Method common to all sections: every tool runs in its own fresh process on the same files
in the same run; wall time includes interpreter start-up and imports, because a user pays
them; the page cache is warmed by an untimed round rather than dropped (that needs root);
timed rounds run the tools round-robin so that background load hits all of them alike;
medians are shown with the min-max spread. Each section names its machine and versions.
"""


def _mib(value: float) -> str:
    return "–" if not value else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _times(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"  # NaN: no reference to compare with


def _produced(result: ToolResult, expected: int) -> str:
    parts = [f"{result.series}/{expected} series"]
    if result.failed:
        parts.append(f"{result.failed} failed")
    detail = result.detail
    if detail.get("verdicts"):
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(detail["verdicts"].items())))
    if detail.get("tilt_reslices"):
        parts.append(f"+{detail['tilt_reslices']} tilt reslices")
    for key, label in (("itk_threads", "ITK threads"), ("torch_threads", "torch threads")):
        if key in detail:
            parts.append(f"{label} {detail[key]}")
    return "; ".join(parts)


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _verdict(ratio: float, limit: float) -> str:
    return f"{'met' if ratio <= limit else '**missed**'} ({ratio:.2f}×)"


def _reference(rows: list[Row], name: str, workers: int) -> Row | None:
    """The peer's row with `workers` workers, else its single-worker row."""
    found = {row.workers: row for row in rows if row.tool.name == name and row.ok}
    return found.get(workers) or found.get(1)


def _targets(row: Row, rows: list[Row]) -> tuple[str, str]:
    """The target and result cells of a triage row (empty for peers)."""
    if row.tool.name not in TARGETS or not row.ok:
        return "", ""
    tag, limit = TARGETS[row.tool.name]
    target, result = [], []
    dcm2niix, monai = _reference(rows, "dcm2niix", row.workers), _reference(rows, "monai", 1)
    if dcm2niix is not None:
        target.append(f"{tag} ≤ {limit:g}× dcm2niix")
        result.append("dcm2niix " + _verdict(row.wall / dcm2niix.wall, limit))
    if monai is not None:
        target.append(f"≤ {MONAI_FACTOR:g}× MONAI")
        result.append("MONAI " + _verdict(row.wall / monai.wall, MONAI_FACTOR))
    return "; ".join(target), "; ".join(result)


def main_table(rows: list[Row], skipped: dict[str, str], expected: int) -> list[str]:
    """Markdown lines of the speed and memory table, one row per tool and worker count."""
    lines = ["| tool | workers | wall s, median (min–max) | in-process s | start-up + "
             "imports s | wall s/series | peak RSS MiB, largest process | peak RSS MiB, "
             "process tree | × dcm2niix wall | × dcm2niix in-process | produced | target "
             "| result |", "|" + " --- |" * 13]
    for row in rows:
        ok = row.ok
        if not ok:
            error = next((run.error for run in row.runs if run.error), "not run")
            lines.append(f"| {row.tool.label} | {row.workers} | error: {error} |" + " |" * 10)
            continue
        walls = [run.wall_s for run in ok]
        failed = f", {len(row.runs) - len(ok)} run(s) failed" if len(ok) < len(row.runs) else ""
        reference = _reference(rows, "dcm2niix", row.workers)
        ratio, inner_ratio = ((row.wall / reference.wall, row.in_process / reference.in_process)
                              if reference else (float("nan"), float("nan")))
        target, result = _targets(row, rows)
        lines.append(
            f"| {row.tool.label} | {row.workers} | {row.wall:.2f} ({min(walls):.2f}–"
            f"{max(walls):.2f}){failed} | {row.in_process:.2f} "
            f"| {row.wall - row.in_process:.2f} | {row.wall / expected:.3f} "
            f"| {_mib(max(run.maxrss_mib for run in ok))} "
            f"| {_mib(max(run.tree_mib for run in ok))} | {_times(ratio)} | {_times(inner_ratio)} "
            f"| {_produced(ok[-1].result, expected) if ok[-1].result else ''} "
            f"| {target} | {result} |")
    for name, reason in skipped.items():
        lines.append(f"| {get_tool(name).label} | | skipped: {reason} |" + " |" * 10)
    return lines


def _growth(small: Measured, large: Measured) -> float:
    """Peak-memory growth from N to 2N series: the larger of the two RSS measures' ratios."""
    tree = large.tree_mib / small.tree_mib if small.tree_mib else 0.0
    return max(large.maxrss_mib / small.maxrss_mib, tree)


def summary(rows: list[Row], pairs: list[tuple[int, Measured, Measured]]) -> list[str]:
    """One plain sentence per target and triage row: met or missed, by how much."""
    lines = []
    for row in rows:
        if row.tool.name not in TARGETS or not row.ok:
            continue
        tag, limit = TARGETS[row.tool.name]
        dcm2niix, monai = _reference(rows, "dcm2niix", row.workers), _reference(rows, "monai", 1)
        parts = []
        if dcm2niix is not None:
            single = _reference(rows, "dcm2niix", 1)
            also = (f" ({row.wall / single.wall:.2f}× single-process dcm2niix)"
                    if single is not None and single is not dcm2niix else "")
            parts.append(f"{row.wall / dcm2niix.wall:.2f}× dcm2niix's wall time with "
                         f"{_workers(dcm2niix.workers)} (target ≤ {limit:g}×): "
                         f"{'met' if row.wall / dcm2niix.wall <= limit else '**missed**'}"
                         f"{also}")
        if monai is not None:
            ratio = row.wall / monai.wall
            parts.append(f"{ratio:.2f}× MONAI's (target ≤ {MONAI_FACTOR:g}×): "
                         f"{'met' if ratio <= MONAI_FACTOR else '**missed**'}")
        lines.append(f"- {tag} {row.tool.label}, {_workers(row.workers)}: {'; '.join(parts)}. "
                     f"Start-up and imports are {row.wall - row.in_process:.1f} s of its "
                     f"{row.wall:.1f} s.")
    for workers, small, large in pairs:
        if not (small.error or large.error):
            ratio = _growth(small, large)
            lines.append(f"- Memory, full ingest with {_workers(workers)}: peak RSS "
                         f"{ratio:.2f}× on twice the series (target ≤ {SCALING_LIMIT:g}×): "
                         f"{'met' if ratio <= SCALING_LIMIT else '**missed**'}.")
    return lines


def scaling_table(pairs: list[tuple[int, Measured, Measured]], series: int) -> list[str]:
    """Markdown lines of full ingest's peak memory on N and 2N series."""
    lines = ["| tool | workers | series | wall s | peak RSS MiB, largest process | ratio "
             "| peak RSS MiB, process tree | ratio | target | result |", "|" + " --- |" * 10]
    for workers, small, large in pairs:
        if small.error or large.error:
            lines.append(f"| triage full ingest | {workers} | error: "
                         f"{small.error or large.error} |" + " |" * 7)
            continue
        ratio = large.maxrss_mib / small.maxrss_mib
        tree = large.tree_mib / small.tree_mib if small.tree_mib else float("nan")
        lines.append(
            f"| triage full ingest | {workers} | {series} → {2 * series} "
            f"| {small.wall_s:.1f} → {large.wall_s:.1f} "
            f"| {_mib(small.maxrss_mib)} → {_mib(large.maxrss_mib)} | {ratio:.2f}× "
            f"| {_mib(small.tree_mib)} → {_mib(large.tree_mib)} | {tree:.2f}× "
            f"| ≤ {SCALING_LIMIT:g}× | {_verdict(_growth(small, large), SCALING_LIMIT)} |")
    return lines


def _version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _dcm2niix_version() -> str:
    import re

    try:
        text = subprocess.run(["dcm2niix", "--version"], capture_output=True, text=True,
                              check=False).stdout
    except OSError:
        return "not installed"
    match = re.search(r"v\d+\.\d+\.\d+\w*", text)
    return match.group(0) if match else "unknown"


def _machine(load_before: float) -> str:
    import platform

    cpu, memory = platform.processor() or platform.machine(), ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        kib = next(int(line.split()[1]) for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; 1-min load "
            f"average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} at its end "
            "(its own processes included)")


def _commit() -> str:
    def git(*args: str) -> str:
        # --no-optional-locks: never take the index lock of a tree others are working in.
        return subprocess.run(["git", "--no-optional-locks", "-C", str(REPO), *args],
                              capture_output=True, text=True, check=False).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except OSError:
        return "commit unknown"
    return f"commit {head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


def _export_line(settings: BenchSettings, export: Path) -> str:
    from pydicom.uid import UID

    from triage.data.synth import get_device

    files = [p for p in export.rglob("*") if p.is_file() and p.parent != export]
    devices = []
    for name in settings.devices:
        device = get_device(name)
        quirk = (f", {device.gantry_tilt_deg:g}° gantry tilt in {device.tilt_fraction:.0%} "
                 "of its studies" if device.tilt_fraction else "")
        matrix = round(settings.matrix * device.matrix_scale)
        devices.append(f"`{name}` ({UID(device.transfer_syntax).name}, {matrix}²{quirk})")
    size = sum(p.stat().st_size for p in files) / 2**20
    return (f"{settings.series} CT series (one study each, no localizer, SR or thick "
            f"series) × {settings.slices} slices, devices round-robin: {', '.join(devices)}; "
            f"{len(files):,} DICOM files, {size:.0f} MiB (seed {settings.seed}).")


def notes(floor_mib: float, warmup: bool) -> list[str]:
    """The method notes under the tables."""
    return [
        "- Targets (from the benchmark issue): (a) triage load-to-volume at most 1.0× "
        "dcm2niix's wall time, (b) full ingest at most 2.0×; both \"clearly faster\" than "
        f"MONAI's reader, taken as at most {MONAI_FACTOR:g}× its wall time; peak memory "
        f"bounded by a few series, taken as at most {SCALING_LIMIT:g}× when the export "
        "doubles. A triage row is compared with dcm2niix at the same number of workers "
        "and with MONAI's single process.",
        "- What each tool does: dcm2niix converts the whole export (`-z n -b n -f %s_%j`, "
        "recursive) to uncompressed NIfTI files on disk, a tilted series also as a "
        "resliced `_Tilt_1` file; with N workers, having no parallel mode of its own, it "
        "runs once per series folder, N processes at a time, from a small Python wrapper; "
        "triage load-to-volume scans every header, selects one series per study and "
        "builds each float32 volume with its geometry checks (tilt resliced), in memory, "
        "then drops it; triage full ingest (`ingest_export`, what "
        "`triage ingest` runs) also resamples to the model grid, normalizes, writes the "
        "volume cache (`.nii.gz`, gzip level 1), device statistics and the report; "
        "SimpleITK reads each series folder with GDCM series IDs and "
        "`ImageSeriesReader.Execute`; MONAI calls `LoadImage(reader=\"PydicomReader\", "
        "image_only=False)` on each series folder. Only dcm2niix writes full volumes to "
        "disk (into the page cache; nothing forces them out).",
        "- Wall time includes interpreter start-up and imports (dcm2niix is a native "
        "binary); in-process time is each tool's own clock after its imports (dcm2niix: "
        "the time it reports); the start-up column is the difference.",
        "- Peak RSS, largest process: `ru_maxrss` of the tool's process from `os.wait4`; "
        "for a process pool that is the largest single process, not the sum. Process tree: "
        "the RSS of the process and its descendants summed, sampled every 50 ms: an upper "
        "bound (pages shared after fork count once per process) that can miss short peaks. "
        "Both are the maximum over the timed rounds. Every child inherits the harness's "
        f"own peak RSS ({floor_mib:.0f} MiB) until it execs, so no figure is below it.",
        "- The page cache is warm for every tool (an untimed warm-up round; the export "
        "fits in RAM): these are parse, decode and assembly times, not disk reads."
        if warmup else "- No warm-up round: the first tool may have read from disk.",
        f"- {os.cpu_count()} cores: absolute times vary by tens of percent between runs "
        "when other work shares the machine (see the load averages above); interleaving "
        "the rounds keeps the ratios steadier. SimpleITK and torch use their own threads "
        "(see the produced column); triage's workers are processes.",
    ]


def render(settings: BenchSettings, export: Path, rows: list[Row], skipped: dict[str, str],
           scaling: list[tuple[int, Measured, Measured]], *, elapsed_s: float,
           floor_mib: float, load_before: float) -> str:
    """The markdown of the ingest section, without its markers."""
    from datetime import datetime

    versions = ", ".join(f"{name} {_version(dist)}" for name, dist in (
        ("triage", "triage"), ("pydicom", "pydicom"), ("SimpleITK", "SimpleITK"),
        ("MONAI", "monai"), ("torch", "torch"), ("numpy", "numpy")))
    rounds = f"{'one untimed warm-up round, then ' if settings.warmup else ''}" \
             f"{settings.repeats} timed round(s), round-robin over the tools"
    lines = [
        "## Ingest: DICOM export → volumes", "",
        f"`{settings.command}`, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"{elapsed_s / 60:.1f} min in all; {rounds}.", "",
        f"- Machine: {_machine(load_before)}.",
        f"- Versions: {versions}, dcm2niix {_dcm2niix_version()}; {_commit()}.",
        f"- Export: {_export_line(settings, export)}", "",
        *main_table(rows, skipped, settings.series),
    ]
    if scaling:
        volume = settings.matrix ** 2 * settings.slices * 4 / 2**20
        lines += ["", f"Memory scaling of full ingest (one run per size, fresh cache; one "
                  f"{settings.matrix}² × {settings.slices} float32 volume is "
                  f"{_mib(volume)} MiB):", "", *scaling_table(scaling, settings.series)]
    verdicts = summary(rows, scaling)
    if verdicts:
        lines += ["", "Against the targets:", "", *verdicts]
    lines += ["", "Notes:", "", *notes(floor_mib, settings.warmup)]
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace the ingest section of `doc` (between its markers), creating the file if needed.

    Text outside the markers, other benchmarks' sections included, is kept; a file without
    the markers gets the section appended.
    """
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else DOC_INTRO
    start, end = text.find(BEGIN), text.find(END)
    if 0 <= start < end:
        text = text[:start] + block + text[end + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(doc)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> BenchSettings:
    """Resolve the command line; ``--quick`` changes the defaults, not explicit values."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest.run",
                                     description=__doc__.splitlines()[0])
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
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"tools to run (default: {','.join(TOOLS)})")
    parser.add_argument("--quick", action="store_true",
                        help="4 series x 16 slices of 64^2, one round, no warm-up, no "
                             "scaling, no doc unless --doc")
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
        timeout_s=args.timeout,
        command=" ".join(["python -m benchmarks.ingest.run",
                          *(sys.argv[1:] if argv is None else argv)]))
    if min(settings.series, settings.slices, settings.matrix, settings.repeats) < 1:
        parser.error("--series, --slices, --matrix and --repeats must be positive.")
    return settings


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
    run_rounds(settings, export, rows)
    scaling = run_scaling(settings, export) if settings.scaling else []
    shutil.rmtree(settings.out / "runs", ignore_errors=True)
    section = render(settings, export, rows, skipped, scaling,
                     elapsed_s=time.perf_counter() - started, floor_mib=harness_peak_mib(),
                     load_before=load_before)
    print(section)
    if settings.doc is not None:
        write_section(settings.doc, section)
        print(f"wrote the ingest section of {settings.doc}")
    return 1 if any(run.error for row in rows for run in row.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
