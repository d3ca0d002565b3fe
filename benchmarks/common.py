"""Helpers shared by the benchmarks: one measured subprocess (wall time, peak RSS of the
process and of its tree, CPU time), the summed RSS of a process tree over time, the
harness's own peak, package versions and the commit for the reports, and the marked
sections of docs/benchmarks.md.

`TreeSampler` watches a child process and everything it starts (ingest workers, their
decoders) and keeps the peak of their summed resident memory. Standard library only, so a
harness that imports it adds little to the peaks it measures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL_S = 0.05
RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB


def _tree(root: int) -> set[int]:
    """`root` and all its descendants, from /proc."""
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
    return tree


def tree_memory_bytes(root: int) -> tuple[int, int | None]:
    """Resident bytes of `root` and all its descendants from /proc, summed two ways: RSS
    (a page shared after fork counts once per process sharing it) and PSS (a shared page
    split among its sharers: the tree's physical memory; 0 where ``smaps_rollup`` is
    missing). PSS is None when a process started or ended while the sum was read: the
    shares read before and after it would not add up (a worker that exits after its share
    was read leaves its pages counted in full by the parent read next). (0, 0) where /proc
    is unavailable."""
    tree = _tree(root)
    rss = pss = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except (OSError, IndexError, ValueError):
            continue
    return rss, pss if _tree(root) == tree else None


def tree_rss_bytes(root: int) -> int:
    """Resident bytes (RSS) of `root` and all its descendants (`tree_memory_bytes`)."""
    return tree_memory_bytes(root)[0]


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process tree every `SAMPLE_INTERVAL_S` until stopped.

    Pages shared after fork are counted once per process in `peak` (RSS) and split among
    their sharers in `peak_pss` (PSS, the physical memory). Without /proc (macOS) both
    stay 0.

    Attributes:
        pid: the root process.
        peak: the largest RSS sum seen, in bytes.
        peak_pss: the largest PSS sum seen, in bytes.

    Example:
        >>> sampler = TreeSampler(os.getpid())
        >>> sampler.start()
        >>> sampler.stop()
        >>> sampler.peak >= 0
        True
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_pss = pid, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        while True:
            rss, pss = tree_memory_bytes(self.pid)
            self.peak = max(self.peak, rss)
            if pss is not None:  # else the tree changed while it was read
                self.peak_pss = max(self.peak_pss, pss)
            if self._stop_event.wait(SAMPLE_INTERVAL_S):
                return

    def stop(self) -> None:
        """Stop sampling and wait for the thread (the last sample is in `peak`)."""
        self._stop_event.set()
        self.join()


def write_marked_section(path: Path, begin: str, end: str, text: str,
                         intro: str = "# Benchmarks\n") -> None:
    """Replace what lies between the `begin` and `end` markers of `path` with `text`.

    Text outside the markers, other benchmarks' sections included, is kept; a file without
    the markers gets the section appended (a missing file starts with `intro`). The file is
    replaced atomically.
    """
    block = f"{begin}\n{text.strip()}\n{end}"
    doc = path.read_text(encoding="utf-8") if path.exists() else intro
    start, stop = doc.find(begin), doc.find(end)
    if 0 <= start < stop:
        doc = doc[:start] + block + doc[stop + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)


def env_with_repo(repo: Path) -> dict[str, str]:
    """This process's environment with `repo` first on ``PYTHONPATH`` (for child tools)."""
    return os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(repo), *filter(None, [os.environ.get("PYTHONPATH")])])}


@dataclass(frozen=True)
class ProcessRun:
    """One measured subprocess.

    Attributes:
        exit_code: its exit status (negative: killed by that signal).
        wall_s: wall time from start to exit.
        maxrss_mib: ``ru_maxrss`` from ``os.wait4``: the largest single process.
        tree_mib: the sampled peak of the summed RSS of the process and its descendants.
        cpu_s: user + system time of the process and the children it reaped.
        tree_pss_mib: the sampled peak of their summed PSS (pages shared after fork
            counted once: the tree's physical memory).
    """

    exit_code: int
    wall_s: float
    maxrss_mib: float
    tree_mib: float
    cpu_s: float
    tree_pss_mib: float = 0.0


def run_measured(cmd: list[str], out_log: Path, err_log: Path, *, cwd: Path,
                 timeout_s: float, env: dict[str, str] | None = None) -> ProcessRun:
    """Run `cmd` in a fresh subprocess, stdout and stderr to the logs, killed after
    `timeout_s`; time it and record its peak memory (`ProcessRun`)."""
    with out_log.open("wb") as out, err_log.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
        sampler = TreeSampler(proc.pid)
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
    return ProcessRun(proc.returncode, wall, usage.ru_maxrss * RSS_UNIT / 2**20,
                      sampler.peak / 2**20, usage.ru_utime + usage.ru_stime,
                      sampler.peak_pss / 2**20)


def run_logged(cmd: list[str], log: Path, *, cwd: Path) -> str:
    """Run `cmd` with stderr to `log`; its stdout, or SystemExit naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=cwd)
    if proc.returncode:
        raise SystemExit(f"`{' '.join(cmd[1:])}` failed ({proc.returncode}); see {log}")
    return proc.stdout


def package_version(distribution: str) -> str:
    """The installed version of `distribution`, or ``"not installed"``."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit(repo: Path) -> str:
    """``"commit abc1234"`` of `repo`'s HEAD, ``" with uncommitted changes"`` when dirty;
    ``"commit unknown"`` outside a checkout. Takes no index lock (``--no-optional-locks``):
    others may be working in the tree."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args],
                              capture_output=True, text=True, check=False).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    except OSError:
        return "commit unknown"
    return f"commit {head or 'unknown'}{' with uncommitted changes' if dirty else ''}"


def harness_peak_mib() -> float:
    """The harness's own peak RSS: the floor under every child's ``ru_maxrss``."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20
