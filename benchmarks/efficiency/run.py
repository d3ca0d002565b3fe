"""`make bench-efficiency`: inference cost of each model variant, and a MONAI peer pipeline.

Sized for about fifteen to twenty minutes on 2 cores: a 300-study synthetic training export
at the demo's lesion difficulty (`make demo`, docs/synthetic_data.md) on a small matrix,
one device held out of training, and the demo network with 3x3x3 convolutions (so that its
convolutions, not its fixed context filters, carry the cost pruning can remove) trained as
the fp32 parent under the demo rules (triage/configs/rules/demo.yaml: the marginal
split-conformal guarantee at alpha 0.1, 9 calibration positives per device, pooled where a
device has fewer), so that it certifies routine thresholds at this size. Then its ONNX fp32
and int8 variants and its 30/50/70 % channel-pruned variants (`triage export`, each
recalibrated on its own calibration scores under the rules the parent recorded; the 70 %
one also as an ONNX graph), and a narrower student distilled from it (`triage train
--teacher`, same rules). Per variant: parameters, file size, forward ms per volume on 2
threads, AUROC in-domain and on the held-out device, ECE after temperature, device groups
with a certified routine threshold; then the goal (>= 2x the fp32 forward throughput,
held-out AUROC within 1 point, no certified group lost) and the variants that meet it.
Then an incoming export (150 studies) through `triage run` (torch, onnx, int8, and the
70 % pruned network's ONNX graph) and through
the pipeline a MONAI user would write (LoadImage with PydicomReader -> EnsureChannelFirst
-> Orientation -> Spacing -> ScaleIntensityRange -> ResizeWithPadOrCrop -> the same
network, in a DataLoader with 2 workers), in interleaved rounds: studies/min and the ratio
triage / peer against the issue's 3x goal. Both clocks start after the model is loaded and
include worker start-up, discovery of the studies and the last score (triage's also its
routing and worklists); neither counts interpreter start or imports.
The section goes between the ``efficiency`` markers of docs/benchmarks.md::

    python -m benchmarks.efficiency.run [--studies 300 --incoming 150 --epochs 8 --rounds 2]
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "efficiency"
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- efficiency:begin -->", "<!-- efficiency:end -->"
THREADS = 2
HOLDOUT = "cygnus"
SYNTH = ["--matrix", "96", "--slices", "24", "--no-extras", "--workers", "2"]
# The demo's lesion difficulty (triage/demo.py SYNTH_FLAGS): a network learns it in 8 epochs.
LESIONS = ["--lesion-size", "14,24", "--lesion-contrast", "-90"]
# Marginal (split-conformal) guarantee at alpha 0.1, per device with >= 9 calibration
# positives, else pooled where the shift check allows: certifies at this size, where the
# default rules (PAC at alpha 0.01, 299 positives per group) cannot.
RULES = ("rules", "demo")
TARGET_RATIO = 3.0  # the goal: triage run >= 3x the MONAI peer's throughput
SPLITS = "train=0.5,val=0.1,calib=0.3,test=0.1"
PARENT = {"name": "blob-fcn", "options": {
    "channels": [32, 32, 16], "strides": [1, 1, 1], "kernel": 3, "pool": "max",
    "context": [9, 9, 5], "downsample": [2, 2, 2], "contrast_prior": 1.0}}
PRUNE_RATIOS = (0.3, 0.5, 0.7)
FINETUNE_EPOCHS = 2
# Forward timing: one batch of 4 volumes per variant per round, the variants interleaved
# round by round, so a change of load on the shared machine falls on all of them alike.
FORWARD_ROUNDS = 15
STUDENT = {"name": "blob-fcn", "options": {
    "channels": [16, 8], "strides": [1, 1], "kernel": 1, "pool": "max", "context": [9, 9, 5],
    "downsample": [2, 2, 2], "contrast_prior": 1.0}}


def _triage(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "triage", *argv], cwd=REPO, text=True,
                          capture_output=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"triage {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def prepare(args: argparse.Namespace) -> dict[str, Path]:
    """Exports, ingest and the trained parent and student, each stage cached (keyed by the
    sizes and settings that make it)."""
    import yaml

    from triage.configs import config_path

    rules = config_path(*RULES)
    key = _fingerprint(SYNTH, LESIONS, SPLITS, PARENT, STUDENT, rules.read_text())
    root = OUT / f"n{args.studies}-e{args.epochs}-{key}"
    paths = {"root": root, "export": root / "export",
             "incoming": OUT / f"incoming-{args.incoming}-{_fingerprint(SYNTH)}",
             "ingest": root / "ingest", "parent": root / "parent", "student": root / "student"}
    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed, extra in (("export", args.studies, 11, ["--splits", SPLITS, *LESIONS]),
                                 ("incoming", args.incoming, 12, LESIONS)):
        if not (paths[name] / "manifest.csv").is_file():
            shutil.rmtree(paths[name], ignore_errors=True)
            _triage("synth", str(paths[name]), "--studies", str(n), "--seed", str(seed),
                    *SYNTH, *extra)
    if not (paths["ingest"] / "ingest_summary.json").is_file():
        _triage("ingest", str(paths["export"]), "--out", str(paths["ingest"]), "--config",
                str(config_path("ingest", "synthetic")))
    common = ["--manifest", str(paths["export"] / "manifest.csv"), "--ingest",
              str(paths["ingest"]), "--holdout-device-group", _holdout(paths),
              "--epochs", str(args.epochs), "--rules", str(rules), "--json"]
    conf = yaml.safe_load(config_path("train", "demo").read_text())
    for name, model, extra in (("parent", PARENT, []),
                               ("student", STUDENT, ["--teacher",
                                                     str(paths["parent"] / "bundle")])):
        if not (paths[name] / "bundle" / "bundle.json").is_file():
            shutil.rmtree(paths[name], ignore_errors=True)
            config = root / f"{name}.yaml"
            config.write_text(yaml.safe_dump(conf | {"model": model}))
            _triage("train", *common, "--config", str(config), "--out", str(paths[name]),
                    *extra)
    return paths


def _holdout(paths: dict[str, Path]) -> str:
    import pandas as pd

    groups = sorted(pd.read_csv(paths["export"] / "manifest.csv")["device_group"].unique())
    return next(g for g in groups if g.startswith(HOLDOUT))


def _file_mb(bundle: Any) -> float:
    size = len(bundle.onnx_model) if bundle.runtime == "onnx" else sum(
        v.numel() * v.element_size() for v in bundle.state_dict.values())
    return size / 1e6


def measure_variants(paths: dict[str, Path]) -> list[dict[str, Any]]:
    import torch

    from triage.export.prune import make_pruned_variant
    from triage.export.variant import export_data, forward_ms, load_volumes, make_variant
    from triage.registry.bundle import load_bundle
    from triage.registry.evaluate import evaluate_bundle

    torch.set_num_threads(THREADS)
    parent = load_bundle(paths["parent"] / "bundle")
    student = load_bundle(paths["student"] / "bundle")
    data = export_data(parent, paths["export"] / "manifest.csv", paths["ingest"])
    onnx = make_variant(parent, data, quantize="none").bundle
    int8 = make_variant(parent, data, quantize="int8").bundle
    pruned = {r: make_pruned_variant(parent, data, ratio=r,
                                     finetune_epochs=FINETUNE_EPOCHS).bundle
              for r in PRUNE_RATIOS}
    top = max(PRUNE_RATIOS)
    pruned_onnx = make_variant(pruned[top], data, quantize="none").bundle
    volumes = load_volumes(data, (data.test + data.calib)[:4])
    variants = [("fp32 torch", parent), ("ONNX fp32", onnx), ("ONNX int8", int8),
                *((f"pruned {r:.0%} (torch)", b) for r, b in pruned.items()),
                (f"pruned {top:.0%} + ONNX fp32", pruned_onnx), ("distilled (torch)", student)]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for round_no in range(FORWARD_ROUNDS):
        for name, bundle in variants:  # warmed up once, in the first round
            times[name].append(forward_ms(bundle, volumes, runtime=bundle.runtime, repeats=1,
                                          warm_up=round_no == 0))
    rows = []
    for name, bundle in variants:
        row = {"variant": name, "params": sum(v.numel() for k, v in bundle.state_dict.items()
                                              if "running" not in k and "num_batches" not in k),
               "file_mb": round(_file_mb(bundle), 3),
               "forward_ms": round(statistics.median(times[name]), 2),
               "forward_ms_range": [round(min(times[name]), 2), round(max(times[name]), 2)],
               "temperature": round(bundle.temperature, 3),
               "certified": _certified(bundle)}
        for split, samples in (("test", data.test), ("held_out", data.held_out)):
            metrics, _ = evaluate_bundle(bundle, samples, paths["ingest"], device="cpu")
            cal = metrics[metrics["calibrated"] & (metrics["group"] == "all")].iloc[0]
            row[f"{split}_auroc"] = round(float(cal["auroc"]), 3)
            row[f"{split}_ece"] = round(float(cal["ece"]), 3)
        rows.append(row)
    save = paths["root"] / "variants"
    from triage.registry.bundle import save_bundle

    save_bundle(onnx, save / "onnx")
    save_bundle(int8, save / "int8")
    save_bundle(pruned_onnx, save / "pruned-onnx")
    return rows


def _forward(row: dict[str, Any]) -> str:
    """``median (min–max)`` forward ms of a variant row (an older row: the median alone)."""
    low_high = row.get("forward_ms_range")
    text = f"{row['forward_ms']:.2f}"
    return text + (f" ({low_high[0]:.2f}–{low_high[1]:.2f})" if low_high else "")


def _certified(bundle: Any) -> str:
    """Device groups with a certified routine threshold, of those calibrated."""
    groups = (bundle.routing or {}).get("groups") or {}
    return f"{sum(g.get('t_low') is not None for g in groups.values())}/{len(groups)}"


def goal(variants: list[dict[str, Any]]) -> str:
    """The variants with >= 2x the fp32 model's forward throughput, held-out AUROC within
    one point of it and no certified group lost, as a sentence."""
    base = variants[0]
    certified = int(base["certified"].split("/")[0])
    met = [r["variant"] for r in variants[1:]
           if base["forward_ms"] >= 2 * r["forward_ms"]
           and r["held_out_auroc"] >= base["held_out_auroc"] - 0.01
           and int(r["certified"].split("/")[0]) >= certified]
    verdict = ", ".join(met) if met else "no variant"
    if not certified:
        return (f"{verdict} on speed and AUROC, but the guarantee cannot be judged: the fp32 "
                f"parent certifies no routine threshold at this size (T at its bound of 20 "
                f"means its calibration scores barely separate the classes).")
    return f"{verdict}."


PIPELINES: tuple[tuple[str, str, str], ...] = (("triage run, fp32 torch", "parent/bundle", "torch"),
             ("triage run, ONNX fp32", "variants/onnx", "onnx"),
             ("triage run, ONNX int8", "variants/int8", "onnx"),
             ("triage run, pruned 70% + ONNX fp32", "variants/pruned-onnx", "onnx"))
PEER = "MONAI peer (LoadImage/PydicomReader ... DataLoader, 2 workers), fp32 torch"


def measure_runs(paths: dict[str, Path], rounds: int) -> list[dict[str, Any]]:
    """`triage run` (torch, onnx, int8, pruned + onnx) and the MONAI peer on the incoming
    export, in `rounds` interleaved rounds (each pipeline once per round, so that a burst
    of other jobs' load falls on all of them); a row keeps every round and its fastest."""
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    seconds: dict[str, list[float]] = {}
    studies: dict[str, int] = {}
    for _ in range(rounds):
        for name, model, runtime in PIPELINES:
            out = paths["root"] / f"run-{runtime}-{Path(model).name}"
            shutil.rmtree(out, ignore_errors=True)
            summary = json.loads(_triage("run", str(paths["incoming"]), "--model",
                                         str(paths["root"] / model), "--out", str(out),
                                         "--workers", str(THREADS), "--runtime", runtime,
                                         "--device", "cpu", "--json"))
            studies[name] = summary["processed"]
            seconds.setdefault(name, []).append(summary["seconds"])
        n, took = monai_peer(paths)
        studies[PEER] = n
        seconds.setdefault(PEER, []).append(took)
    rows: list[dict[str, Any]] = []
    for name in [p[0] for p in PIPELINES] + [PEER]:
        best = min(seconds[name])
        rows.append({"pipeline": name, "studies": studies[name], "seconds": round(best, 2),
                     "rounds_per_min": [round(60 * studies[name] / t, 1)
                                        for t in seconds[name]],
                     "studies_per_min": round(60 * studies[name] / best, 1)})
    peer = rows[-1]["studies_per_min"]
    for row in rows:
        row["ratio"] = round(row["studies_per_min"] / peer, 2) if peer else None
    return rows


def monai_peer(paths: dict[str, Path]) -> tuple[int, float]:
    """The same studies through a plain MONAI pipeline and the fp32 network: (studies,
    seconds). Per study the series with the most files (the thin reconstruction, the one
    `triage run` selects too), found by reading every file's header."""
    import numpy as np
    import pydicom
    import torch
    from monai.data import DataLoader, Dataset, PydicomReader
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRanged,
        Spacingd,
    )

    from triage.registry.bundle import load_bundle

    bundle = load_bundle(paths["parent"] / "bundle")
    pre = bundle.preprocess_config
    started = time.perf_counter()
    files: dict[str, dict[Path, int]] = {}
    for path in sorted(paths["incoming"].rglob("*")):
        if path.is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM
                continue
            counts = files.setdefault(ds.StudyInstanceUID, {})
            counts[path.parent] = counts.get(path.parent, 0) + 1
    series = {uid: max(counts, key=lambda d: counts[d]) for uid, counts in files.items()}
    lo, hi = pre.get("ct_window", [-200.0, 300.0])
    transform = Compose([
        LoadImaged("image", reader=PydicomReader()),  # type: ignore[arg-type]
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes=pre.get("orientation", "RAS")),
        Spacingd("image", pixdim=pre["target_spacing"], mode="bilinear"),
        ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
        ResizeWithPadOrCropd("image", spatial_size=pre["target_shape"])])
    loader = DataLoader(Dataset([{"image": str(p)} for p in series.values()], transform),
                        batch_size=4, num_workers=THREADS)
    net = bundle.build_model()
    torch.set_num_threads(THREADS)
    scores = []
    with torch.inference_mode():
        for batch in loader:
            scores.append(torch.softmax(net(batch["image"].float()), 1)[:, 1].numpy())
    seconds = time.perf_counter() - started
    return (len(np.concatenate(scores)) if scores else 0), seconds


def run_goal(runs: list[dict[str, Any]]) -> str:
    """The triage run rows at or above TARGET_RATIO x the peer, as a sentence."""
    met = [r["pipeline"].removeprefix("triage run, ") for r in runs[:-1]
           if r["ratio"] is not None and r["ratio"] >= TARGET_RATIO]
    best = max(runs[:-1], key=lambda r: r["ratio"] or 0.0)
    if met:
        return f"met by {', '.join(met)}."
    return (f"missed: the best, {best['pipeline'].removeprefix('triage run, ')}, reaches "
            f"{best['ratio']}x.")


def section(variants: list[dict[str, Any]], runs: list[dict[str, Any]],
            meta: dict[str, Any]) -> str:
    lines = [
        "## Efficiency: model variants and a MONAI peer pipeline",
        "",
        f"`make bench-efficiency` ({meta['when']}, {meta['minutes']} min; {meta['machine']}, "
        f"{THREADS} threads; {meta['versions']}). Training export: {meta['studies']} "
        f"synthetic studies (`{' '.join(SYNTH[:4] + LESIONS)}`, the demo's lesion "
        f"difficulty; grid {meta['in_shape']}; splits {SPLITS}), held-out device "
        f"`{meta['holdout']}` (left out of training and calibration); parent = the demo "
        f"network with 3x3x3 convolutions (blob-fcn, channels [32, 32, 16]) trained "
        f"{meta['epochs']} epochs on {meta['n_train']} studies; pruned = `triage export "
        f"--prune R --finetune-epochs {FINETUNE_EPOCHS}` (L1 structured, channels removed); "
        f"student = blob-fcn with channels [16, 8], 1x1x1, distilled from it (alpha 0.7, "
        f"T 4). Rules: triage/configs/rules/demo.yaml, the marginal (split-conformal) "
        f"guarantee E[miss rate] <= 0.1 per device with at least 9 calibration positives, "
        f"else pooled where the Mann-Whitney shift check allows (the default rules, PAC at "
        f"alpha 0.01, need 299 positives per group: none certifies at this size). Every "
        f"variant's temperature and thresholds are refitted on its own scores of the "
        f"{meta['n_calib']} calibration studies under the rules the parent recorded; "
        f"*certified*: device groups whose routine threshold is certified (per device or "
        f"pooled), of those calibrated. Forward ms: per volume, the median over "
        f"{FORWARD_ROUNDS} rounds of one batch of 4 volumes per variant, the variants "
        f"interleaved round by round (the range: fastest and slowest round). "
        f"{meta['n_test']} in-domain test and {meta['n_held_out']} held-out studies, "
        f"so an AUROC step is about a hundredth. Load average at the end of the run: "
        f"{meta['load']} (other processes shared the cores: timings are noisy).",
        "",
        "| variant | params | file MB | forward ms/volume | T | AUROC in-domain | "
        "AUROC held-out | ECE in-domain | ECE held-out | certified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in variants:
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['file_mb']:.3f} | "
                     f"{_forward(r)} | {r['temperature']} | {r['test_auroc']} | "
                     f"{r['held_out_auroc']} | {r['test_ece']} | {r['held_out_ece']} | "
                     f"{r['certified']} |")
    lines += ["", "Goal (>= 2x the fp32 torch forward throughput, held-out AUROC within 1 point, "
              "no certified group lost): " + goal(variants)]
    lines += ["", f"Incoming export: {meta['incoming']} synthetic studies (same flags, seed "
              f"12), 2 ingest workers (the peer: 2 DataLoader workers), batch 4, inference on "
              f"{THREADS} threads; {meta['rounds']} interleaved rounds (each pipeline once per "
              f"round). Both clocks start after the model is loaded and stop after the last "
              f"study is scored (triage's after its routing, journal and worklists): both "
              f"include worker start-up and finding the studies in the export, neither counts "
              f"interpreter start, imports or loading the model. *studies/min*: the fastest "
              f"round (the least disturbed by other jobs); *rounds*: each round's figure; "
              f"*x peer*: studies/min over the peer's.", "",
              "| pipeline | studies | seconds | studies/min | rounds | x peer |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        rounds = ", ".join(f"{v:g}" for v in r["rounds_per_min"])
        lines.append(f"| {r['pipeline']} | {r['studies']} | {r['seconds']} | "
                     f"{r['studies_per_min']} | {rounds} | {r['ratio']} |")
    lines += ["", f"Goal (`triage run` >= {TARGET_RATIO:g}x the peer's throughput): "
              + run_goal(runs)]
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}{END}"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--incoming", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the run-level comparison")
    parser.add_argument("--no-doc", action="store_true", help="print, do not edit the doc")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    OUT.mkdir(parents=True, exist_ok=True)
    paths = prepare(args)
    variants = measure_variants(paths)
    runs = measure_runs(paths, args.rounds)
    import monai
    import onnxruntime
    import torch

    from triage.export.variant import export_data
    from triage.registry.bundle import load_bundle

    parent = load_bundle(paths["parent"] / "bundle")
    data = export_data(parent, paths["export"] / "manifest.csv", paths["ingest"])
    meta = {"when": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "versions": f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
                        f"MONAI {monai.__version__}",
            "studies": args.studies, "incoming": args.incoming, "epochs": args.epochs,
            "holdout": _holdout(paths),
            "in_shape": "x".join(map(str, parent.in_shape)),
            "n_test": len(data.test), "n_held_out": len(data.held_out),
            "n_calib": len(data.calib), "n_train": len(data.train), "rounds": args.rounds,
            "load": f"{os.getloadavg()[0]:.1f}"}
    text = section(variants, runs, meta)
    print(text)
    (OUT / "results.json").write_text(json.dumps({"variants": variants, "runs": runs,
                                                  "meta": meta}, indent=1))
    if not args.no_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
