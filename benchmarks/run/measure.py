"""The run benchmark's measurements: each one a fresh subprocess, timed from outside.

    end to end    `triage run EXPORT --model BUNDLE --out FRESH --json`: wall time around
                  the process, CPU time of the whole process tree (``os.wait4``: the
                  ingest workers it reaped included), peak RSS (``ru_maxrss``: the
                  largest single process) and the summed RSS of the tree sampled every 50 ms
    forward only  the same bundle's ``predict_proba`` over the volumes that run cached,
                  loaded into memory first; only the forward passes are timed, in batches
                  of the same size and shape as the pipeline's, with torch's default
                  thread count or one thread, whichever is faster on the first batches
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import ProcessRun, env_with_repo, run_measured
from benchmarks.run.data import OUT, REPO, triage_cmd

PROBE_BATCHES = 8
"""Batches on which forward-only compares torch's default thread count with one thread."""


@dataclass(frozen=True)
class Measured:
    """One timed subprocess.

    Attributes:
        kind: ``e2e`` (`triage run`) or ``forward`` (forward passes only).
        network: key of the benchmarked network (`benchmarks.run.data.NETWORKS`).
        studies: studies in the export (e2e) or volumes scored (forward).
        wall_s: wall time around the subprocess (e2e: the throughput's denominator).
        maxrss_mib: ``ru_maxrss`` of the largest single process of the tree.
        tree_mib: peak of the sampled RSS sum over the process tree.
        tree_pss_mib: peak of the sampled PSS sum over it (shared pages counted once).
        scored: studies the model scored (e2e: rows with a probability; studies that fail
            ingest by design cost ingest time but no forward pass), volumes (forward).
        cpu_s: user + system CPU seconds of the process and the children it reaped.
        result: the child's JSON (e2e: the run summary; forward: its timings).
    """

    kind: str
    network: str
    studies: int
    wall_s: float
    maxrss_mib: float
    tree_mib: float
    scored: int
    cpu_s: float = float("nan")
    result: dict[str, Any] = field(default_factory=dict)
    tree_pss_mib: float = float("nan")

    @property
    def timed_s(self) -> float:
        """Seconds the throughput is computed from: wall (e2e) or forward passes only."""
        return self.result["forward_s"] if self.kind == "forward" else self.wall_s

    @property
    def per_minute(self) -> float:
        return 60 * self.studies / self.timed_s if self.timed_s > 0 else float("nan")

    @property
    def scored_per_minute(self) -> float:
        return 60 * self.scored / self.timed_s if self.timed_s > 0 else float("nan")


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds while the runs are measured."""

    def __init__(self, interval_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.interval_s, self.samples = interval_s, [os.getloadavg()[0]]
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> tuple[float, float]:
        """Stop; (mean, max) of the samples."""
        self._stop_event.set()
        self.join()
        return statistics.mean(self.samples), max(self.samples)


def measure(kind: str, cmd: list[str], log_stem: Path, timeout_s: float
            ) -> tuple[ProcessRun, dict[str, Any]]:
    """Run `cmd` once in a fresh subprocess: its measures and the JSON it printed."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    out_log, err_log = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    run = run_measured(cmd, out_log, err_log, cwd=REPO, timeout_s=timeout_s,
                       env=env_with_repo(REPO))
    if run.exit_code != 0:
        raise SystemExit(f"{kind} run failed with exit status {run.exit_code}; see {err_log}")
    text = out_log.read_text(errors="replace")
    result = json.loads(text[text.index("{"):])
    return run, result


def _measured(kind: str, network: str, studies: int, run: ProcessRun, scored: int,
              result: dict[str, Any]) -> Measured:
    return Measured(kind, network, studies, run.wall_s, run.maxrss_mib, run.tree_mib, scored,
                    run.cpu_s, result, run.tree_pss_mib)


def run_dir(network: str, studies: int) -> Path:
    """Where the latest `triage run` of `network` on `studies` studies wrote its output."""
    return OUT / "runs" / f"{network}-e2e-s{studies}"


def e2e(network: str, export: Path, bundle: Path, studies: int, args: argparse.Namespace,
        tag: str) -> Measured:
    """`triage run` on `export` into a fresh folder (kept: forward-only reads its cache)."""
    out = run_dir(network, studies)
    shutil.rmtree(out, ignore_errors=True)
    cmd = triage_cmd("run", str(export), "--model", str(bundle), "--out", str(out), "--json",
                     "--batch-size", str(args.batch_size), "--device", args.device,
                     "--workers", str(args.workers))
    run, result = measure(
        "e2e", cmd, OUT / "logs" / f"{network}-e2e-s{studies}-{tag}", args.timeout)
    if result.get("processed") != studies:
        raise SystemExit(f"triage run processed {result.get('processed')} of {studies} "
                         f"studies (see {out})")
    with (out / "worklist.csv").open(encoding="utf-8", newline="") as fh:
        scored = sum(1 for row in csv.DictReader(fh) if row["p_calibrated"])
    return _measured("e2e", network, studies, run, scored, result)


def forward(network: str, bundle: Path, cache: Path, scored: int, args: argparse.Namespace,
            tag: str) -> Measured:
    """Forward passes only, over the `scored` volumes a `triage run` left in `cache`."""
    cmd = [sys.executable, "-m", "benchmarks.run.run", "--forward-child", "--bundle",
           str(bundle), "--cache", str(cache), "--batch-size", str(args.batch_size),
           "--device", args.device]
    run, result = measure(
        "forward", cmd, OUT / "logs" / f"{network}-forward-s{scored}-{tag}", args.timeout)
    if result["volumes"] != scored:
        raise SystemExit(f"forward-only found {result['volumes']} cached volumes, expected "
                         f"{scored} (one per study the run scored)")
    return _measured("forward", network, scored, run, scored, result)


def forward_child(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: load the cached volumes, then time only the forward passes.

    torch's default intra-op thread count and one thread are compared on the first
    `PROBE_BATCHES` batches; every batch is then timed with the faster setting, the
    baseline (``forward_s``). Both probes are reported.
    """
    import numpy as np
    import torch

    from triage.preprocess.cache import VolumeCache
    from triage.registry.bundle import load_bundle

    started = time.perf_counter()
    bundle = load_bundle(args.bundle)
    cache = VolumeCache(args.cache)
    arrays = []
    for entry in cache.entries():
        prepared = cache.get(entry.key)
        if prepared is not None and tuple(prepared.array.shape) == bundle.in_shape:
            arrays.append(prepared.array)
    load_s = time.perf_counter() - started
    size = args.batch_size

    def batch(start: int) -> np.ndarray:
        # exactly what the pipeline feeds the model: a short batch padded to full size
        chunk = arrays[start:start + size]
        return np.stack(chunk + [chunk[-1]] * (size - len(chunk)))

    starts = list(range(0, len(arrays), size))

    def timed(threads: int, batches: list[int]) -> tuple[float, float]:
        torch.set_num_threads(threads)
        bundle.predict_proba(batch(0), device=args.device, batch_size=size)  # warm-up
        wall = cpu = 0.0
        for start in batches:
            t0, c0 = time.perf_counter(), time.process_time()
            bundle.predict_proba(batch(start), device=args.device, batch_size=size)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        return wall, cpu

    # The thread counts are compared on the first batches; the faster times every batch.
    probe = starts[:PROBE_BATCHES]
    by_threads: dict[str, dict[str, float]] = {}
    for threads in dict.fromkeys([torch.get_num_threads(), 1]):
        wall, _ = timed(threads, probe)
        by_threads[str(threads)] = {"probe_s_per_batch": wall / len(probe)}
    best = min(by_threads, key=lambda t: by_threads[t]["probe_s_per_batch"])
    wall, cpu = timed(int(best), starts)
    by_threads[best] |= {"forward_s": wall, "cpu_s": cpu}
    device = "cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else (
        args.device if args.device != "auto" else "cpu")
    return {"volumes": len(arrays), "batches": -(-len(arrays) // size), "load_s": load_s,
            "forward_s": by_threads[best]["forward_s"],
            "forward_cpu_s": by_threads[best]["cpu_s"], "threads": int(best),
            "by_threads": by_threads, "device": device}
