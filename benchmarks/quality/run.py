"""`make bench-quality`: does device-grouped perturbation hold up on a scanner never seen?

On one synthetic multi-device export at the documented default difficulty
(docs/synthetic_data.md), every configuration is trained once per seed with one device group
held out (leave-one-device-out; default: the most shifted device, ``cygnus``), and scored on
the in-domain test split and on every study of the held-out device:

    baseline   cross-entropy, no class weights, no perturbation, plain sampling
    focal      focal loss (prevalence class weights), class/device-balanced sampling
    focal+dp   focal + device-grouped domain perturbation (the default config)
    focal+dp+T the same runs after temperature scaling fitted on the calibration split

Each training runs in a fresh subprocess (its peak RSS comes from ``os.wait4``). Results
go to ``bench_output/quality/`` and, between the ``quality`` markers, to
``docs/benchmarks.md``. Not part of CI::

    python -m benchmarks.quality.run                       # 3 seeds, held-out cygnus
    python -m benchmarks.quality.run --seeds 0 --quick     # smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import write_marked_section
from triage.configs import config_path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "quality"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
TRAIN_CONFIG = config_path("train", "quality")
INGEST_CONFIG = config_path("ingest", "synthetic")

# name -> TrainConfig.replace() sections applied on top of the quality config.
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "baseline": {"loss": {"name": "ce", "alpha": "none"}, "perturb": {"enabled": False},
                 "sampling": {"class_aware": False, "device_balanced": False}},
    "focal": {"loss": {"name": "focal"}, "perturb": {"enabled": False}},
    "focal+dp": {"loss": {"name": "focal"}, "perturb": {"enabled": True}},
}
COLUMNS = ("accuracy", "macro_f1", "auroc", "nll", "ece")


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """Generate and ingest the export once (reused while the arguments are the same)."""
    # The difficulty flags are part of the name: another difficulty is another export.
    knobs = hashlib.sha256(args.synth_args.encode()).hexdigest()[:8]
    name = f"s{args.studies}-m{args.matrix}-seed{args.data_seed}-{knobs}"
    root = OUT / "data" / name
    export, ingest = root / "export", root / "ingest"
    if not (root / ".complete").exists():
        # An unfinished earlier attempt (killed mid-way) is this harness's own: start over.
        shutil.rmtree(export, ignore_errors=True)
        shutil.rmtree(ingest, ignore_errors=True)
        cmd = [sys.executable, "-m", "triage", "synth", str(export), "--studies",
               str(args.studies), "--seed", str(args.data_seed), "--matrix", str(args.matrix),
               "--no-extras", "--thick-fraction", "0", *args.synth_args.split()]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "triage", "ingest", str(export), "--out",
                        str(ingest), "--config", str(INGEST_CONFIG), "--json"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (root / ".complete").write_text(" ".join(cmd))
    return export / "manifest.csv", ingest


def one(args: argparse.Namespace) -> None:
    """Child process: one training run; prints one JSON line."""
    from triage.train.config import TrainConfig
    from triage.train.lodo import lodo_row
    from triage.train.run import train_model

    config = TrainConfig.from_yaml(args.config).replace(
        runtime={"seed": args.seed, "experiment": "quality-benchmark"},
        **CONFIGS[args.variant])
    started = time.perf_counter()
    outcome = train_model(manifest_path=args.manifest, ingest_dir=args.ingest, config=config,
                          out_dir=args.out, holdout_device=args.holdout, progress=False,
                          run_name=f"{args.variant}-{args.holdout}-seed{args.seed}",
                          log_model=False)
    rows = {str(cal): lodo_row(args.holdout, outcome, calibrated=cal) for cal in (False, True)}
    print(json.dumps({"variant": args.variant, "seed": args.seed, "holdout": args.holdout,
                      "seconds": time.perf_counter() - started, "rows": rows}, default=float))


def run_child(argv: list[str], log_path: Path) -> tuple[dict, float, float]:
    """Run one training subprocess; (its JSON result, wall seconds, peak RSS MiB)."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.quality.run", *argv],
                                stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"training run {argv} failed; see {log_path}")
    last = [line for line in out.splitlines() if line.startswith("{")][-1]
    return json.loads(last), time.perf_counter() - started, usage.ru_maxrss / 1024


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: list[dict], holdout: str, key: str = "rows") -> str:
    """The issue's table: in-domain metrics, then held-out accuracy / AUROC, mean ± sd.

    `key` picks the figures: ``rows`` (the run's own test sets) or ``pool_rows`` (the
    large test export, `benchmarks.quality.pool`)."""
    header = ["configuration", *[f"in-domain {c}" for c in COLUMNS],
              f"held-out ({holdout}) acc", f"held-out ({holdout}) AUROC",
              f"held-out ({holdout}) ECE", "AUROC gap (in − held-out)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    variants = [(v, False) for v in CONFIGS] + [("focal+dp", True)]
    for variant, calibrated in variants:
        rows = [r[key][str(calibrated)] for r in results
                if r["variant"] == variant and r["holdout"] == holdout and r.get(key)]
        if not rows:
            continue
        label = variant + ("+T" if calibrated else "")
        cells = [mean_sd([row[f"in_domain_{c}"] for row in rows]) for c in COLUMNS]
        cells += [mean_sd([row[f"held_out_{c}"] for row in rows])
                  for c in ("accuracy", "auroc", "ece")]
        cells.append(mean_sd([row["auroc_gap"] for row in rows]))
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def verdicts(results: list[dict], holdout: str, key: str = "rows") -> list[str]:
    """The issue's targets, met or missed, in words (figures from `key`, as `table`)."""
    def values(variant: str, name: str, calibrated: bool = False) -> list[float]:
        return [r[key][str(calibrated)][name] for r in results
                if r["variant"] == variant and r["holdout"] == holdout and r.get(key)]

    out = []
    base_gap = statistics.mean(values("baseline", "accuracy_gap") or [float("nan")])
    out.append(f"Baseline loses {100 * base_gap:.1f} points of accuracy on {holdout} versus "
               f"in-domain (needed: ≥ 5 for the benchmark to prove anything): "
               f"{'met' if base_gap >= 0.05 else '**missed**'}.")
    dp_gap = statistics.mean(values("focal+dp", "auroc_gap", True) or [float("nan")])
    out.append(f"Full method: held-out AUROC within {100 * dp_gap:.1f} points of in-domain "
               f"(target ≤ 3): {'met' if dp_gap <= 0.03 else '**missed**'}.")
    dp, base = values("focal+dp", "held_out_auroc"), values("baseline", "held_out_auroc")
    if len(dp) >= 2 and len(base) >= 2:
        gain = statistics.mean(dp) - statistics.mean(base)
        spread = max(statistics.stdev(dp), statistics.stdev(base))
        out.append(f"Held-out AUROC gain over the baseline {gain:+.3f} vs seed spread "
                   f"{spread:.3f}: {'met' if gain > spread else '**missed**'}.")
    return out


def write_doc(text: str, path: Path) -> None:
    """Replace the block between the quality markers of `path` (append it when absent)."""
    write_marked_section(path, BEGIN, END, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--holdout", default="cygnus",
                        help="device profile held out (comma-separated), or 'all'")
    # The documented default difficulty (docs/synthetic_data.md, "Default difficulty").
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--synth-args",
                        default="--slices 40 --lesion-size 14,24 --lesion-contrast -90 "
                                "--device-noise cygnus=50",
                        help="extra `triage synth` flags (difficulty knobs)")
    parser.add_argument("--config", type=Path, default=TRAIN_CONFIG)
    parser.add_argument("--variants", default=",".join(CONFIGS))
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-pool", action="store_true",
                        help="skip scoring on the large test export (benchmarks.quality.pool)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report (doc + MLflow) from the last results.json")
    # child mode
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ingest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        one(args)
        return 0
    if args.quick:
        args.studies, args.seeds = 60, "0"
    if not args.config.exists():
        args.config = config_path("train", "default")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report_saved(args)
    started = time.perf_counter()
    manifest, ingest = prepare(args)
    devices = _device_groups(manifest)
    holdouts = devices if args.holdout == "all" else [
        _match(name, devices) for name in args.holdout.split(",")]
    results, peaks = [], {}
    for holdout in holdouts:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in args.variants.split(","):
                out = OUT / "runs" / holdout / f"{variant}-seed{seed}"
                # Fresh: training resumes from a checkpoint it finds, and a resumed run's
                # wall time would be reported as a training time.
                shutil.rmtree(out, ignore_errors=True)
                result, wall, peak = run_child(
                    ["--one", "--variant", variant, "--seed", str(seed), "--manifest",
                     str(manifest), "--ingest", str(ingest), "--out", str(out), "--holdout",
                     holdout, "--config", str(args.config)], OUT / f"{out.name}.log")
                result["wall"], result["peak_mib"] = wall, peak
                peaks.setdefault(variant, []).append((wall, peak))
                results.append(result)
                print(f"{holdout} {variant} seed {seed}: {wall:.0f} s, {peak:.0f} MiB, "
                      f"held-out AUROC {result['rows']['False']['held_out_auroc']:.3f}",
                      flush=True)
    if not args.no_pool and not args.quick:
        add_pool_rows(results, args)
    seconds = time.perf_counter() - started
    (OUT / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "holdouts": holdouts,
         "seconds": seconds, "results": results}, indent=1, default=float))
    return publish(args, results, holdouts, peaks, seconds)


def add_pool_rows(results: list[dict], args: argparse.Namespace) -> None:
    """Score every run's model on the large test export; ``result["pool_rows"]``."""
    from benchmarks.quality import pool

    info = pool.prepare(args.synth_args, args.matrix)
    for result in results:
        bundle = OUT / "runs" / result["holdout"] / f"{result['variant']}-seed{result['seed']}"
        result["pool_rows"] = pool.pool_rows(bundle / "bundle", result["holdout"], info)
        print(f"{result['holdout']} {result['variant']} seed {result['seed']}: scored on the "
              f"test export", flush=True)


def report_saved(args: argparse.Namespace) -> int:
    """`--report-only`: the report of the last full run, from results.json."""
    saved = json.loads((OUT / "results.json").read_text())
    for key in ("seeds", "studies", "matrix", "synth_args"):
        setattr(args, key, type(getattr(args, key))(saved["args"][key]))
    if not args.no_pool and any("pool_rows" not in r for r in saved["results"]):
        add_pool_rows(saved["results"], args)
        (OUT / "results.json").write_text(json.dumps(saved, indent=1, default=float))
    peaks: dict[str, list[tuple[float, float]]] = {}
    for result in saved["results"]:
        peaks.setdefault(result["variant"], []).append((result["wall"], result["peak_mib"]))
    return publish(args, saved["results"], saved["holdouts"], peaks, saved["seconds"])


def publish(args: argparse.Namespace, results: list[dict], holdouts: list[str],
            peaks: dict[str, list[tuple[float, float]]], seconds: float) -> int:
    """Print the report, write it into the doc and log it to MLflow."""
    text = report(args, results, holdouts, peaks, seconds)
    print(text)
    write_doc(text, args.doc)
    log_to_mlflow(text, results)
    return 0


def log_to_mlflow(text: str, results: list[dict]) -> None:
    """One `quality-benchmark-summary` run: the table as markdown, the raw results, and the
    mean of every row figure as metrics (``<holdout>.<variant>[+T].<metric>``)."""
    from triage.registry.tracking import start_run

    with start_run("quality-benchmark", run_name="quality-benchmark-summary",
                   tags={"triage.kind": "quality-benchmark-summary"}) as run:
        run.log_text(text, "quality_benchmark.md")
        run.log_json(results, "quality_results.json")
        grouped: dict[str, list[float]] = {}
        for result in results:
            for source, prefix in (("rows", ""), ("pool_rows", "pool.")):
                for calibrated, row in (result.get(source) or {}).items():
                    name = result["variant"] + ("+T" if calibrated == "True" else "")
                    for key, value in row.items():
                        if isinstance(value, int | float) and value == value:
                            grouped.setdefault(f"{prefix}{result['holdout'][:40]}.{name}.{key}",
                                               []).append(float(value))
        run.log_metrics({k.replace("+", "_plus_"): statistics.mean(v)
                         for k, v in grouped.items()})


def report(args: argparse.Namespace, results: list[dict], holdouts: list[str],
           peaks: dict[str, list[tuple[float, float]]], seconds: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## Quality: held-out scanner (leave-one-device-out)", "",
             f"`python -m benchmarks.quality.run --seeds {args.seeds} --studies {args.studies}"
             f" --matrix {args.matrix} --synth-args '{args.synth_args}'`, {now}, "
             f"{seconds / 60:.1f} min in all on {os.cpu_count()} CPU cores "
             f"({platform.processor() or platform.machine()}).", "",
             f"Train config `{args.config.relative_to(REPO)}`, ingest grid "
             f"`{INGEST_CONFIG.relative_to(REPO)}`. In-domain = the other devices' test "
             "split; held-out = every study of the held-out device. Mean ± sd over seeds.", ""]
    for holdout in holdouts:
        lines += [f"### Held out: `{holdout}`", ""]
        pooled = [r["pool_rows"]["False"] for r in results
                  if r["holdout"] == holdout and r.get("pool_rows")]
        if pooled:
            from benchmarks.quality import pool

            lines += [f"On the large test export (`benchmarks/quality/pool.py`: "
                      f"`triage synth --seed {pool.POOL_SEED}`, the same difficulty, "
                      f"{pool.POOL_STUDIES // len(pool.POOL_DEVICES)} studies each of "
                      f"{', '.join(f'`{d}`' for d in pool.POOL_DEVICES)}; "
                      f"in-domain = {pooled[0]['n_in_domain']} studies of the training "
                      f"devices, held-out = {pooled[0]['n_held_out']} of `{holdout}`). The "
                      f"targets are judged here:", "",
                      table(results, holdout, "pool_rows"), ""]
            lines += [f"- {v}" for v in verdicts(results, holdout, "pool_rows")] + [""]
            lines += ["On the run's own test sets (in-domain: the other devices' test split, "
                      "~50 studies; held-out: every study of the held-out device in the "
                      "training export, ~100), where one study is 1-2 points:", ""]
        lines += [table(results, holdout), ""]
        lines += [f"- {v}" for v in verdicts(results, holdout)] + [""]
    lines += ["Training cost per run (wall s incl. evaluation, peak RSS):", ""]
    for variant, values in peaks.items():
        walls = [w for w, _ in values]
        lines.append(f"- {variant}: {statistics.mean(walls):.0f} s mean, "
                     f"{max(p for _, p in values):.0f} MiB peak")
    return "\n".join(lines)


def _device_groups(manifest: Path) -> list[str]:
    import csv

    with open(manifest, encoding="utf-8", newline="") as fh:
        return sorted({row["device_group"] for row in csv.DictReader(fh)})


def _match(name: str, devices: list[str]) -> str:
    matches = [d for d in devices if d == name or d.startswith(name + "-")]
    if len(matches) != 1:
        raise SystemExit(f"--holdout {name!r} matches {matches or 'no'} device group(s) of "
                         f"{devices}")
    return matches[0]


if __name__ == "__main__":
    sys.exit(main())
