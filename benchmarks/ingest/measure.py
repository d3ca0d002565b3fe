"""Run one tool once in a fresh subprocess: wall time, peak RSS, in-process time.

`measure` times the subprocess from outside (interpreter start-up and imports included),
reads ``ru_maxrss`` from ``os.wait4`` (the largest single process) and samples the summed
RSS of the process tree every 50 ms (`TreeSampler`, `benchmarks.common`). `Row` collects
the timed runs of one tool at one worker count.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import env_with_repo, run_measured
from benchmarks.ingest.settings import REPO
from benchmarks.ingest.tools import Tool, ToolResult


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


def measure(tool: Tool, export: Path, run_dir: Path, workers: int, log_stem: Path,
            timeout_s: float) -> Measured:
    """Run `tool` once in a fresh subprocess; time it and record its peak memory.

    `run_dir` is emptied first; stdout and stderr go to ``<log_stem>.out`` and ``.err``.
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    out_log, err_log = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    run = run_measured(tool.command(export, run_dir, workers), out_log, err_log, cwd=REPO,
                       timeout_s=timeout_s, env=env_with_repo(REPO))
    wall, maxrss, tree = run.wall_s, run.maxrss_mib, run.tree_mib
    if run.exit_code != 0:
        return Measured(wall, maxrss, tree, None,
                        f"exit status {run.exit_code}; see {err_log}")
    try:
        result = tool.result(out_log.read_text(errors="replace"), run_dir, workers)
    except ValueError as err:
        return Measured(wall, maxrss, tree, None, f"{err} ({err_log})")
    return Measured(wall, maxrss, tree, result)
