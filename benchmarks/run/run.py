"""`make bench-run`: does `triage run` keep the model busy, and does its memory stay flat?

On synthetic exports (`triage synth --no-extras`) and one small model bundle trained once
with the demo's network config (its quality does not matter here, its forward cost does),
each measured thing runs in a fresh subprocess:

    end to end    `triage run EXPORT --model BUNDLE --out FRESH --json`: studies/minute from
                  the wall time around the process (start-up, scan, ingest, inference, rules,
                  worklists), peak RSS (``ru_maxrss`` from ``os.wait4``: the largest single
                  process) and the summed RSS of the process tree sampled every 50 ms
    forward only  the same bundle's ``predict_proba`` over the volumes that run cached,
                  loaded into memory first; only the forward passes are timed, in batches
                  of the same size and shape as the pipeline's (after one untimed warm-up)

The ratio end-to-end / forward-only says whether the pipeline keeps the model busy
(target ≥ 0.8); peak RSS of `triage run` on 400 vs 100 studies says whether memory stays
flat (target ≤ 1.2×). Exports and the bundle are cached under ``bench_output/run/``; the
figures go between the ``run`` markers of ``docs/benchmarks.md``. Not part of CI::

    python -m benchmarks.run.run                 # 400-study export, scaling 100 vs 400
    python -m benchmarks.run.run --repeats 3     # median of 3 rounds
    python -m benchmarks.run.run --quick         # smoke run into bench_output/run/quick.md

The harness imports only the standard library (and the ingest benchmark's stdlib-only
process-tree sampler): a child inherits the parent's peak RSS until it execs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.ingest.measure import RSS_UNIT, _TreeSampler, harness_peak_mib

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "run"
BEGIN, END = "<!-- run:begin -->", "<!-- run:end -->"
TRAIN_CONFIG = REPO / "pipelines" / "train" / "demo.yaml"
INGEST_CONFIG = REPO / "pipelines" / "ingest" / "synthetic.yaml"
RATIO_TARGET = 0.8
RSS_LIMIT = 1.2
EXPORT_SEED = 500  # + studies: the 100- and 400-study exports are different draws
MODEL_SEED = 900


@dataclass(frozen=True)
class Measured:
    """One timed subprocess.

    Attributes:
        kind: ``e2e`` (`triage run`) or ``forward`` (forward passes only).
        studies: studies in the export (e2e) or volumes scored (forward).
        scored: studies the model scored (e2e: rows with a probability; studies that fail
            ingest by design cost ingest time but no forward pass), volumes (forward).
        wall_s: wall time around the subprocess (e2e: the throughput's denominator).
        maxrss_mib: ``ru_maxrss`` of the largest single process of the tree.
        tree_mib: peak of the sampled RSS sum over the process tree.
        result: the child's JSON (e2e: the run summary; forward: its timings).
    """

    kind: str
    studies: int
    wall_s: float
    maxrss_mib: float
    tree_mib: float
    scored: int
    result: dict[str, Any] = field(default_factory=dict)

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


# -- preparing the data (cached) ---------------------------------------------------------

def _triage(*argv: str) -> list[str]:
    return [sys.executable, "-m", "triage", *argv]


def _quiet(cmd: list[str], log: Path) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"`{' '.join(cmd[2:])}` failed ({proc.returncode}); see {log}")
    return proc.stdout


def _synth(export: Path, studies: int, seed: int, matrix: int) -> list[str]:
    return _triage("synth", str(export), "--studies", str(studies), "--seed", str(seed),
                   "--matrix", str(matrix), "--no-extras", "--workers", "2", "--overwrite")


def prepare_export(studies: int, matrix: int) -> Path:
    """A synthetic export of `studies` studies, generated once."""
    root = OUT / "exports" / f"s{studies}-m{matrix}"
    export = root / "export"
    if not (root / ".complete").exists():
        cmd = _synth(export, studies, EXPORT_SEED + studies, matrix)
        print(f"generating {export.relative_to(REPO)} ...", flush=True)
        _quiet(cmd, root / "synth.log")
        (root / ".complete").write_text(" ".join(cmd[2:]))
    return export


def prepare_model(studies: int, matrix: int, epochs: int) -> Path:
    """A bundle trained once with the demo config on a separate small export.

    Retrained when the demo config changes (its hash is part of the cache folder's name).
    """
    import hashlib

    digest = hashlib.sha256(TRAIN_CONFIG.read_bytes()).hexdigest()[:8]
    root = OUT / "model" / f"s{studies}-m{matrix}-e{epochs}-{digest}"
    done = root / ".complete"
    if done.exists():
        return Path(done.read_text().strip())
    export, ingest = root / "export", root / "ingest"
    print(f"training the benchmark model in {root.relative_to(REPO)} ...", flush=True)
    _quiet(_synth(export, studies, MODEL_SEED, matrix), root / "synth.log")
    _quiet(_triage("ingest", str(export), "--out", str(ingest), "--config",
                   str(INGEST_CONFIG), "--json"), root / "ingest.log")
    started = time.perf_counter()
    text = _quiet(_triage("train", "--manifest", str(export / "manifest.csv"), "--ingest",
                          str(ingest), "--config", str(TRAIN_CONFIG), "--out",
                          str(root / "train"), "--epochs", str(epochs), "--run-name",
                          "run-benchmark", "--json"), root / "train.log")
    bundle = Path(json.loads(text[text.index("{"):])["bundle"])
    (root / "train_seconds").write_text(f"{time.perf_counter() - started:.1f}")
    done.write_text(str(bundle))
    return bundle


# -- measuring ------------------------------------------------------------------------------

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


def measure(kind: str, cmd: list[str], log_stem: Path,
            timeout_s: float) -> tuple[float, float, float, dict[str, Any]]:
    """Run `cmd` once in a fresh subprocess: (wall s, ru_maxrss MiB, tree MiB, its JSON)."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    out_log, err_log = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with out_log.open("wb") as out, err_log.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=env)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            wall = time.perf_counter() - started
            sampler.stop()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here, not by Popen
    if code != 0:
        raise SystemExit(f"{kind} run failed with exit status {code}; see {err_log}")
    text = out_log.read_text(errors="replace")
    result = json.loads(text[text.index("{"):])
    return wall, usage.ru_maxrss * RSS_UNIT / 2**20, sampler.peak / 2**20, result


def e2e(export: Path, bundle: Path, studies: int, args: argparse.Namespace, tag: str
        ) -> Measured:
    """`triage run` on `export` into a fresh folder (kept: forward-only reads its cache)."""
    out = OUT / "runs" / f"e2e-s{studies}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = _triage("run", str(export), "--model", str(bundle), "--out", str(out), "--json",
                  "--batch-size", str(args.batch_size), "--device", args.device,
                  "--workers", str(args.workers))
    *got, result = measure("e2e", cmd, OUT / "logs" / f"e2e-s{studies}-{tag}", args.timeout)
    if result.get("processed") != studies:
        raise SystemExit(f"triage run processed {result.get('processed')} of {studies} "
                         f"studies (see {out})")
    with (out / "worklist.csv").open(encoding="utf-8", newline="") as fh:
        scored = sum(1 for row in csv.DictReader(fh) if row["p_calibrated"])
    return Measured("e2e", studies, *got, scored, result)


def forward(bundle: Path, cache: Path, scored: int, args: argparse.Namespace, tag: str
            ) -> Measured:
    """Forward passes only, over the `scored` volumes a `triage run` left in `cache`."""
    cmd = [sys.executable, "-m", "benchmarks.run.run", "--forward-child", "--bundle",
           str(bundle), "--cache", str(cache), "--batch-size", str(args.batch_size),
           "--device", args.device]
    *got, result = measure("forward", cmd, OUT / "logs" / f"forward-s{scored}-{tag}",
                           args.timeout)
    if result["volumes"] != scored:
        raise SystemExit(f"forward-only found {result['volumes']} cached volumes, expected "
                         f"{scored} (one per study the run scored)")
    return Measured("forward", scored, *got, scored, result)


def forward_child(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: load the cached volumes, then time only the forward passes."""
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

    bundle.predict_proba(batch(0), device=args.device, batch_size=size)  # warm-up, untimed
    forward_s = 0.0
    for start in range(0, len(arrays), size):
        t0 = time.perf_counter()
        bundle.predict_proba(batch(start), device=args.device, batch_size=size)
        forward_s += time.perf_counter() - t0
    device = "cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else (
        args.device if args.device != "auto" else "cpu")
    return {"volumes": len(arrays), "batches": -(-len(arrays) // size), "load_s": load_s,
            "forward_s": forward_s, "device": device, "torch_threads": torch.get_num_threads()}


# -- the report -----------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[Measured], studies: int, scale: tuple[int, int]) -> dict[str, Any]:
    """Medians over rounds (throughput, seconds) and maxima (memory) per measured thing."""
    def pick(kind: str, n: int) -> list[Measured]:
        return [r for r in runs if r.kind == kind and n in (None, r.studies)]

    out: dict[str, Any] = {}
    for key, kind, n in [("e2e", "e2e", studies), ("forward", "forward", None),
                         ("small", "e2e", scale[0]), ("large", "e2e", scale[1])]:
        got = pick(kind, n)
        if not got:
            continue
        out[key] = {
            "studies": got[0].studies, "scored": got[0].scored, "rounds": len(got),
            "scored_per_minute": _median([r.scored_per_minute for r in got]),
            "per_minute": _median([r.per_minute for r in got]),
            "per_minute_range": (min(r.per_minute for r in got),
                                 max(r.per_minute for r in got)),
            "timed_s": _median([r.timed_s for r in got]),
            "wall_s": _median([r.wall_s for r in got]),
            "in_process_s": _median([float(r.result.get("seconds", "nan")) for r in got]),
            "maxrss_mib": max(r.maxrss_mib for r in got),
            "tree_mib": max(r.tree_mib for r in got),
            "routes": got[-1].result.get("route", {}),
        }
    if "e2e" in out and "forward" in out:
        # like for like: volumes through the model per minute, with and without the pipeline
        out["ratio"] = out["e2e"]["scored_per_minute"] / out["forward"]["scored_per_minute"]
    if "small" in out and "large" in out:
        out["rss_ratio"] = out["large"]["maxrss_mib"] / out["small"]["maxrss_mib"]
        out["tree_ratio"] = out["large"]["tree_mib"] / out["small"]["tree_mib"]
    return out


def _fmt(value: float, digits: int = 0) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"


def _rate(entry: dict[str, Any]) -> str:
    low, high = entry["per_minute_range"]
    text = _fmt(entry["per_minute"], 1)
    return text if entry["rounds"] < 2 else f"{text} ({_fmt(low, 1)}–{_fmt(high, 1)})"


def table(s: dict[str, Any]) -> str:
    """The measured table: one row per measured thing."""
    lines = ["| measured | studies | scored by the model | studies/min | scored/min "
             "| seconds timed | wall s (process) | peak RSS, largest process (MiB) "
             "| peak RSS, process tree (MiB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = [("e2e", "end to end: `triage run` (wall incl. start-up)"),
            ("forward", "forward only: `predict_proba`, volumes in memory"),
            ("small", "`triage run`, small export"), ("large", "`triage run`, large export")]
    for key, label in rows:
        if key not in s:
            continue
        e = s[key]
        lines.append(f"| {label} | {e['studies']} | {e['scored']} | {_rate(e)} | "
                     f"{_fmt(e['scored_per_minute'], 1)} | {_fmt(e['timed_s'], 1)} | "
                     f"{_fmt(e['wall_s'], 1)} | {_fmt(e['maxrss_mib'])} | "
                     f"{_fmt(e['tree_mib'])} |")
    return "\n".join(lines)


def verdicts(s: dict[str, Any]) -> list[str]:
    """The issue's two targets, met or missed, in words."""
    out = []
    if "ratio" in s:
        ratio = s["ratio"]
        line = (f"Volumes through the model per minute, end to end / forward only = "
                f"{ratio:.2f} (target ≥ "
                f"{RATIO_TARGET}): {'met' if ratio >= RATIO_TARGET else '**missed**'}.")
        if ratio < RATIO_TARGET:
            e, f = s["e2e"], s["forward"]
            model = f["timed_s"] * e["scored"] / f["scored"] / e["timed_s"]
            startup = max(0.0, 1 - e["in_process_s"] / e["wall_s"])
            line += (f" Of the end-to-end wall time, the forward passes take "
                     f"{100 * model:.0f}% (at the forward-only rate) and start-up (interpreter, "
                     f"imports, model load) {100 * startup:.0f}%; the remaining "
                     f"{100 * max(0.0, 1 - model - startup):.0f}% is scan, ingest (decode, "
                     "resample, cache) and rules/worklists that the overlap does not hide: "
                     "the model waits for ingest, not the other way round. With inference on "
                     "the CPU, the ingest workers and the forward passes compete for the same "
                     "cores, so overlapping them cannot hide ingest; the target needs the "
                     "forward passes on an accelerator (or ingest cheaper than inference).")
        out.append(line)
    if "rss_ratio" in s:
        small, large = s["small"]["studies"], s["large"]["studies"]
        ratio, tree = s["rss_ratio"], s["tree_ratio"]
        out.append(f"Peak RSS of `triage run` on {large} vs {small} studies: {ratio:.2f}× "
                   f"for the largest process, {tree:.2f}× for the process tree (target ≤ "
                   f"{RSS_LIMIT}×): {'met' if max(ratio, tree) <= RSS_LIMIT else '**missed**'}"
                   ".")
    return out


def _versions() -> str:
    import importlib.metadata

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip()
    return (f"Python {platform.python_version()}, triage {version('triage')} "
            f"(commit {commit or '?'}), torch {version('torch')}, numpy {version('numpy')}, "
            f"pydicom {version('pydicom')}")


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def report(s: dict[str, Any], meta: dict[str, Any]) -> str:
    """The markdown section (without markers)."""
    fwd = s.get("forward", {})
    device = meta.get("device", "cpu")
    lines = [
        "## `triage run`: throughput and memory", "",
        f"`python -m benchmarks.run.run {meta['argv']}`, {meta['when']}, "
        f"{meta['minutes']:.1f} min in all, {meta['rounds']} round(s) (medians; range in "
        "brackets when more than one).", "",
        f"Machine: {meta['cpus']} CPU cores ({meta['machine']}), inference on {device}; "
        f"{meta['versions']}.",
        f"Load average (1/5/15 min) at the start of the measured runs "
        f"{_load(meta['load_start'])}, at the end {_load(meta['load_end'])}; the 1-min value "
        f"sampled every 5 s while they ran: mean {meta['load_mean']:.1f}, max "
        f"{meta['load_peak']:.1f} on {meta['cpus']} cores. The cores were shared with other "
        "work (the load includes this benchmark's own processes), so absolute figures are "
        "pessimistic and move from run to run.", "",
        f"Exports: `triage synth --no-extras --matrix {meta['matrix']}` (default devices and "
        f"series mix). Model: `{TRAIN_CONFIG.relative_to(REPO)}` (network "
        f"`{meta.get('network', '?')}`) trained "
        f"{meta['epochs']} epoch(s) on a separate {meta['model_studies']}-study export "
        f"({meta['train_s']} s) "
        f"(ingest grid `{INGEST_CONFIG.relative_to(REPO)}`, input "
        f"{meta.get('in_shape', '?')}). `triage run` with `--workers {meta['workers']}` "
        f"(0 = one per core) `--batch-size {meta['batch_size']}`; forward only: the same "
        f"bundle on the {fwd.get('studies', '?')} volumes that run cached, loaded first, "
        f"{meta['batches']} padded batches of "
        f"{meta['batch_size']} after one untimed warm-up batch.", "",
        table(s), "",
        *[f"- {v}" for v in verdicts(s)], "",
        f"Peak RSS is `ru_maxrss` from `os.wait4` (largest single process: the main process "
        "that holds the model) and the sampled sum over the process tree (ingest workers "
        "included; pages shared after fork counted per process). The harness's own peak, "
        f"the floor under every figure: {meta['harness_mib']:.0f} MiB.",
    ]
    return "\n".join(lines)


def write_doc(text: str, path: Path) -> None:
    """Replace the section between the run markers (append it when absent)."""
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)


# -- the command ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=400,
                        help="studies of the throughput export (≥ 200 for the doc)")
    parser.add_argument("--scale", default="100,400",
                        help="SMALL,LARGE export sizes whose peak RSS is compared")
    parser.add_argument("--matrix", type=int, default=64)
    parser.add_argument("--model-studies", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0, help="triage run --workers")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="per run, seconds")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (writes bench_output/run/quick.md)")
    parser.add_argument("--doc", type=Path, default=None)
    # child mode
    parser.add_argument("--forward-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.studies, args.scale, args.model_studies = 16, "8,16", 40
        args.epochs, args.repeats = 1, 1
    if args.doc is None:
        args.doc = OUT / "quick.md" if args.quick else REPO / "docs" / "benchmarks.md"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.forward_child:
        print(json.dumps(forward_child(args)))
        return 0
    small, large = (int(n) for n in args.scale.split(","))
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    OUT.mkdir(parents=True, exist_ok=True)
    bundle = prepare_model(args.model_studies, args.matrix, args.epochs)
    exports = {n: prepare_export(n, args.matrix) for n in sorted({args.studies, small, large})}
    runs: list[Measured] = []
    load_start, load = os.getloadavg(), LoadSampler()
    load.start()
    for round_no in range(args.repeats):
        tag = f"r{round_no}"
        got = e2e(exports[args.studies], bundle, args.studies, args, tag)
        runs.append(got)
        print(f"round {round_no}: triage run, {args.studies} studies: {got.wall_s:.1f} s, "
              f"{got.maxrss_mib:.0f} MiB", flush=True)
        cache = OUT / "runs" / f"e2e-s{args.studies}" / "cache"
        fwd = forward(bundle, cache, got.scored, args, tag)
        runs.append(fwd)
        print(f"round {round_no}: forward only: {fwd.result['forward_s']:.1f} s", flush=True)
        for n in sorted({small, large} - {args.studies}):
            got = e2e(exports[n], bundle, n, args, tag)
            runs.append(got)
            print(f"round {round_no}: triage run, {n} studies: {got.wall_s:.1f} s, "
                  f"{got.maxrss_mib:.0f} MiB", flush=True)
    load_mean, load_peak = load.stop()
    summary = summarize(runs, args.studies, (small, large))
    fwd_result = next(r.result for r in runs if r.kind == "forward")
    meta = {
        "argv": " ".join(argv if argv is not None else sys.argv[1:]),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.perf_counter() - started) / 60, "rounds": args.repeats,
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "versions": _versions(), "load_start": load_start, "load_end": os.getloadavg(),
        "load_mean": load_mean, "load_peak": load_peak, "matrix": args.matrix,
        "epochs": args.epochs, "model_studies": args.model_studies,
        "train_s": _train_seconds(bundle), "workers": args.workers,
        "batch_size": args.batch_size, "device": fwd_result["device"],
        "batches": fwd_result["batches"],
        **dict(zip(("network", "in_shape"), _bundle_facts(bundle), strict=True)),
        "harness_mib": harness_peak_mib(),
    }
    (OUT / "results.json").write_text(json.dumps(
        {"runs": [r.__dict__ for r in runs], "summary": summary, "meta": meta}, indent=1,
        default=str))
    text = report(summary, meta)
    print(text)
    write_doc(text, args.doc)
    return 0


def _train_seconds(bundle: Path) -> str:
    for parent in bundle.parents:
        if (parent / "train_seconds").exists():
            return (parent / "train_seconds").read_text().strip()
    return "?"


def _bundle_facts(bundle: Path) -> tuple[str, str]:
    """(network name, input shape) from the bundle's metadata."""
    try:
        meta = json.loads((bundle / "bundle.json").read_text())
        return (str(meta["model_config"]["name"]),
                "×".join(str(n) for n in meta["in_shape"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "?", "?"


if __name__ == "__main__":
    sys.exit(main())
