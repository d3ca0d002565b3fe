"""The benchmark's rounds: the export it reads, the warm-up and timed rounds, the scaling runs."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.ingest.measure import Measured, Row, measure
from benchmarks.ingest.settings import REPO, BenchSettings
from benchmarks.ingest.tools import Tool, get_tool


def _generate(export: Path, config: dict[str, Any], syntax: str | None) -> str:
    """Write one synthetic export (runs in a spawned process; see `ensure_export`)."""
    from dataclasses import replace

    from triage.data.synth import SynthConfig, generate_export
    from triage.data.synth.devices import get_device

    if syntax is not None:
        config["devices"] = tuple(replace(get_device(name), transfer_syntax=syntax)
                                  for name in config["devices"])
    summary = generate_export(export, SynthConfig(**config),
                              workers=min(2, os.cpu_count() or 1))
    return f"{summary.n_files} files in {summary.seconds:.1f} s"


def ensure_export(settings: BenchSettings, series: int, *,
                  devices: tuple[str, ...] | None = None, syntax: tuple[str, str] | None = None
                  ) -> Path:
    """The export with `series` series at the settings' sizes, generated once and reused.

    Args:
        settings: sizes, seed and the bench folder.
        series: series in the export.
        devices: device profiles (default: the settings').
        syntax: (short name, transfer syntax UID) written by every device instead of its own.

    The generator runs in a spawned process so that the harness stays small.
    """
    devices = devices or settings.devices
    name = (f"{'syntax-' + syntax[0] + '-' if syntax else ''}ct{series}x{settings.slices}x"
            f"{settings.matrix}-{'+'.join(devices)}-seed{settings.seed}")
    export = settings.out / "exports" / name
    done = export.with_name(name + ".complete")
    if done.exists() and export.is_dir():
        return export
    shutil.rmtree(export, ignore_errors=True)
    print(f"generating {export} ...", flush=True)
    config = {"studies": series, "seed": settings.seed, "slices": settings.slices,
              "matrix": settings.matrix, "devices": devices, "extras": False,
              "thick_fraction": 0.0}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(_generate, export, config, syntax[1] if syntax else None)
        done.write_text(result.result() + "\n", encoding="utf-8")
    return export


def compile_sources() -> None:
    """Byte-compile triage and the benchmark once, as installing a package does.

    The tools import them from this source tree; with ``PYTHONDONTWRITEBYTECODE`` set (or
    an unwritable tree) every run would compile some 50 modules anew, about 0.1 s that an
    installed triage never pays (the other tools' packages come compiled).
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "triage"),
                    str(REPO / "benchmarks")], check=False, stdout=subprocess.DEVNULL)


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


def run_rounds(settings: BenchSettings, export: Path, rows: list[Row], *,
               prefix: str = "") -> None:
    """The optional warm-up round, then `settings.repeats` timed rounds, round-robin.

    Run and log names start with `prefix`; without one, earlier logs are cleared first.
    """
    if not prefix:
        shutil.rmtree(settings.out / "logs", ignore_errors=True)
    rounds = ([0] if settings.warmup else []) + list(range(1, settings.repeats + 1))
    for number in rounds:
        label = "warm-up" if number == 0 else f"round {number}/{settings.repeats}"
        for row in rows:
            stem = f"{prefix}{row.tool.name}-w{row.workers}-r{number}"
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
