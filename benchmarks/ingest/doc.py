"""The ingest section of docs/benchmarks.md: machine, versions, export, tables and notes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import git_commit, package_version, write_marked_section
from benchmarks.ingest.measure import Measured, Row
from benchmarks.ingest.report import (
    MONAI_FACTOR,
    SCALING_LIMIT,
    main_table,
    mib,
    scaling_table,
    summary,
)
from benchmarks.ingest.settings import REPO, BenchSettings

if TYPE_CHECKING:
    from benchmarks.ingest.syntaxes import SyntaxRows

BEGIN, END = "<!-- ingest:begin -->", "<!-- ingest:end -->"
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
        "- Verdicts compare medians; the rounds interleave the tools, so each round also "
        "gives a paired ratio, and where a median meets a target but some rounds do not, "
        "the result says so (\"rounds a–b×, k of n above\"): such a target is met only "
        "within the run-to-run spread.",
        "- Wall time includes interpreter start-up and imports (dcm2niix is a native "
        "binary); in-process time is each tool's own clock after its imports (dcm2niix: "
        "the time it reports); the start-up column is the difference. triage and the "
        "benchmark are byte-compiled once before the rounds, as an installed package is "
        "(the other tools' packages come compiled); triage's processes start with "
        "`OPENBLAS_NUM_THREADS=1` (one BLAS thread, as its ingest pool sets anyway).",
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
        "(see the produced column); triage's workers are processes, each decoding on one "
        "thread (pylibjpeg-openjpeg has no thread option) with BLAS limited to one "
        "thread, so a 1-worker triage row uses one core, as dcm2niix does by default. "
        "With workers, triage submits studies largest first (pixels × a per-syntax "
        "decode cost) and reads the headers inline below 4,096 files per worker (a pool "
        "costs more than it saves there); both triage rows split the compressed series "
        "that would otherwise be decoded alone at the end into one part per worker, as "
        "`triage ingest` does (`triage.ingest.stream`; the load-to-volume row through "
        "`benchmarks.ingest.load_pool`, which shares its plan and part decoding); "
        "dcm2niix's wrapper takes the series folders in path order.",
    ]


def render(settings: BenchSettings, export: Path, rows: list[Row], skipped: dict[str, str],
           scaling: list[tuple[int, Measured, Measured]], *, elapsed_s: float,
           floor_mib: float, load_before: float,
           share: tuple[list[Row], int, list[Row]] | None = None,
           syntaxes: dict[str, SyntaxRows] | None = None) -> str:
    """The markdown of the ingest section, without its markers.

    `share` is the JPEG 2000 breakdown: its rows, its number of series and the rows run
    on the series' uncompressed copy (`benchmarks.ingest.share`). `syntaxes` holds the
    per-syntax (dcm2niix, full ingest) rows (`benchmarks.ingest.syntaxes`).
    """
    from datetime import datetime

    versions = ", ".join(f"{name} {package_version(dist)}" for name, dist in (
        ("triage", "triage"), ("pydicom", "pydicom"), ("SimpleITK", "SimpleITK"),
        ("MONAI", "monai"), ("torch", "torch"), ("numpy", "numpy")))
    rounds = f"{'one untimed warm-up round, then ' if settings.warmup else ''}" \
             f"{settings.repeats} timed round(s), round-robin over the tools"
    lines = [
        "## Ingest: DICOM export → volumes", "",
        f"`{settings.command}`, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"{elapsed_s / 60:.1f} min in all; {rounds}.", "",
        f"- Machine: {_machine(load_before)}.",
        f"- Versions: {versions}, dcm2niix {_dcm2niix_version()}; {git_commit(REPO)}.",
        f"- Export: {_export_line(settings, export)}", "",
        *main_table(rows, skipped, settings.series),
    ]
    if scaling:
        volume = settings.matrix ** 2 * settings.slices * 4 / 2**20
        lines += ["", f"Memory scaling of full ingest (one run per size, fresh cache; one "
                  f"{settings.matrix}² × {settings.slices} float32 volume is "
                  f"{mib(volume)} MiB):", "", *scaling_table(scaling, settings.series)]
    verdicts = summary(rows, scaling)
    if verdicts:
        lines += ["", "Against the targets:", "", *verdicts]
    if share is not None:
        from benchmarks.ingest.share import share_table

        lines += ["", f"Where the time goes: the export's {share[1]} JPEG 2000 series alone "
                  "(a folder of links to them), and the same series rewritten uncompressed "
                  "(Explicit VR Little Endian, by pydicom); same rounds, one worker, one "
                  "thread:", "",
                  *share_table(*share)]
    if syntaxes:
        from benchmarks.ingest.syntaxes import DEVICE, syntax_table

        lines += ["", f"Full ingest per transfer syntax: {settings.series} series × "
                  f"{settings.slices} slices of {settings.matrix}², the `{DEVICE}` profile "
                  "(no tilt, no gaps) written in each syntax from the same seed (the same "
                  "pixels); same rounds, one worker each:", "",
                  *syntax_table(syntaxes, settings.series, _mixed(rows))]
    lines += ["", "Notes:", "", *notes(floor_mib, settings.warmup)]
    return "\n".join(lines) + "\n"


def _mixed(rows: list[Row]) -> tuple[Row, Row] | None:
    """The main table's one-worker dcm2niix and full-ingest rows, when both ran."""
    found = {row.tool.name: row for row in rows if row.workers == 1}
    if "dcm2niix" in found and "triage-ingest" in found:
        return found["dcm2niix"], found["triage-ingest"]
    return None


def write_section(doc: Path, section: str) -> None:
    """Replace the ingest section of `doc` (between its markers), creating the file if needed."""
    write_marked_section(doc, BEGIN, END, section, intro=DOC_INTRO)
