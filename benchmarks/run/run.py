"""`make bench-run`: does `triage run` keep the model busy, and does its memory stay flat?

On synthetic exports (`triage synth --no-extras`) and, per benchmarked network, one small
model bundle trained once (`benchmarks.run.data`; its quality does not matter here, its
forward cost does), each measured thing runs in a fresh subprocess
(`benchmarks.run.measure`): `triage run` end to end, and the same bundle's forward passes
alone over the volumes that run cached. The ratio end-to-end / forward-only says whether
the pipeline keeps the model busy (target ≥ 0.8); peak RSS of `triage run` on 400 vs 100
studies says whether memory stays flat (target ≤ 1.2×). Exports and bundles are cached
under ``bench_output/run/``; the figures go between the ``run`` markers of
``docs/benchmarks.md`` (`benchmarks.run.report`). Not part of CI::

    python -m benchmarks.run.run                 # 400-study export, scaling 100 vs 400
    python -m benchmarks.run.run --repeats 3     # median of 3 rounds
    python -m benchmarks.run.run --quick         # smoke run into bench_output/run/quick.md

The harness imports only the standard library (and the stdlib-only process-tree sampler
of `benchmarks.common`): a child inherits the parent's peak RSS until it execs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import git_commit, harness_peak_mib, package_version
from benchmarks.run.data import (
    NETWORKS,
    OUT,
    REPO,
    bundle_facts,
    prepare_export,
    prepare_model,
    train_seconds,
)
from benchmarks.run.measure import LoadSampler, Measured, e2e, forward, forward_child, run_dir
from benchmarks.run.report import section, summarize, write_doc


def _versions() -> str:
    return (f"Python {platform.python_version()}, triage {package_version('triage')} "
            f"({git_commit(REPO)}), torch {package_version('torch')}, "
            f"numpy {package_version('numpy')}, pydicom {package_version('pydicom')}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=400,
                        help="studies of the throughput export (≥ 200 for the doc)")
    parser.add_argument("--scale", default="100,400",
                        help="SMALL,LARGE export sizes whose peak RSS is compared (with the "
                             "first network)")
    parser.add_argument("--networks", default="demo,default,resnet18,resnet18-full",
                        help=f"networks to benchmark, comma-separated: {', '.join(NETWORKS)} "
                             "(demo: triage/configs/train/demo.yaml on the synthetic grid; "
                             "default: triage/configs/train/default.yaml on the default grid; "
                             "resnet18: benchmarks/run/resnet18.yaml, a forward pass heavier "
                             "than a study's ingest; resnet18-full: "
                             "benchmarks/run/resnet18-full.yaml, MONAI's full-resolution "
                             "stem, measured in the first round only)")
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
    unknown = [k for k in args.networks.split(",") if k not in NETWORKS]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(NETWORKS)}")
    if args.quick:
        args.studies, args.scale, args.model_studies = 16, "8,16", 40
        args.epochs, args.repeats = 1, 1
    if args.doc is None:
        args.doc = OUT / "quick.md" if args.quick else REPO / "docs" / "benchmarks.md"
    return args


def _round(round_no: int, bundles: dict[str, Path], exports: dict[int, Path],
           scale: tuple[int, int], args: argparse.Namespace) -> list[Measured]:
    """One round: per network `triage run` and forward only; the memory scaling runs."""
    tag = f"round {round_no}"
    runs: list[Measured] = []
    for key, bundle in bundles.items():
        limit = NETWORKS[key].rounds
        if limit is not None and round_no >= limit:
            continue
        got = e2e(key, exports[args.studies], bundle, args.studies, args, tag)
        runs.append(got)
        print(f"{tag} {key}: triage run, {args.studies} studies: {got.wall_s:.1f} s, "
              f"{got.maxrss_mib:.0f} MiB", flush=True)
        fwd = forward(key, bundle, run_dir(key, args.studies) / "cache", got.scored, args, tag)
        runs.append(fwd)
        print(f"{tag} {key}: forward only: {fwd.result['forward_s']:.1f} s "
              f"({fwd.result['threads']} thread(s))", flush=True)
    first = next(iter(bundles))
    for n in sorted(set(scale) - {args.studies}):
        got = e2e(first, exports[n], bundles[first], n, args, tag)
        runs.append(got)
        print(f"{tag} {first}: triage run, {n} studies: {got.wall_s:.1f} s, "
              f"{got.maxrss_mib:.0f} MiB", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.forward_child:
        print(json.dumps(forward_child(args)))
        return 0
    small, large = (int(n) for n in args.scale.split(","))
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    OUT.mkdir(parents=True, exist_ok=True)
    networks = [NETWORKS[k] for k in args.networks.split(",")]
    bundles = {n.key: prepare_model(n, args.model_studies, args.matrix, args.epochs)
               for n in networks}
    exports = {n: prepare_export(n, args.matrix) for n in sorted({args.studies, small, large})}
    runs: list[Measured] = []
    load_start, load = os.getloadavg(), LoadSampler()
    load.start()
    for round_no in range(args.repeats):
        runs += _round(round_no, bundles, exports, (small, large), args)
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
        "workers": args.workers, "batch_size": args.batch_size,
        "device": fwd_result["device"], "harness_mib": harness_peak_mib(),
        "networks": {n.key: {
            "name": n.key, "title": n.title,
            "train_config": str(n.train_config.relative_to(REPO)),
            "ingest_config": str(n.ingest_config.relative_to(REPO)),
            **dict(zip(("model", "in_shape"), bundle_facts(bundles[n.key]), strict=True)),
            "epochs": args.epochs, "model_studies": args.model_studies,
            "train_s": train_seconds(bundles[n.key])} for n in networks},
    }
    (OUT / "results.json").write_text(json.dumps(
        {"runs": [r.__dict__ for r in runs], "summary": summary, "meta": meta}, indent=1,
        default=str))
    text = section(summary, meta)
    print(text)
    write_doc(text, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
