"""`make bench-efficiency`: inference cost of each model variant, and a MONAI peer pipeline.

Small sizes on purpose (about ten minutes on 2 cores): a synthetic training export
(held-out device left out of training), the demo network with 3x3x3 convolutions (so that
its convolutions, not its fixed context filters, carry the cost pruning can remove)
trained as the fp32 parent, its ONNX fp32 and int8 variants and its 30/50/70 % channel-
pruned variants (`triage export`, each recalibrated on its own calibration scores; the
70 % one also as an ONNX graph), and a narrower student distilled from it (`triage train
--teacher`). Per variant: parameters, file size, forward ms per volume on 2 threads,
AUROC in-domain and on the held-out device, ECE after temperature, device groups with a
certified routine threshold; then the goal (>= 2x the fp32 forward throughput, held-out
AUROC within 1 point, no certified group lost) and the variants that meet it. Then the
incoming export through `triage run` (torch and onnx) and through the pipeline a MONAI
user would write (LoadImage with PydicomReader -> EnsureChannelFirst -> Orientation ->
Spacing -> ScaleIntensityRange -> ResizeWithPadOrCrop -> the same network, in a
DataLoader with 2 workers): studies/min.
The section goes between the ``efficiency`` markers of docs/benchmarks.md::

    python -m benchmarks.efficiency.run [--studies 96 --incoming 16 --epochs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
SPLITS = "train=0.5,val=0.1,calib=0.3,test=0.1"
PARENT = {"name": "blob-fcn", "options": {
    "channels": [32, 32, 16], "strides": [1, 1, 1], "kernel": 3, "pool": "max",
    "context": [9, 9, 5], "downsample": [2, 2, 2], "contrast_prior": 1.0}}
PRUNE_RATIOS = (0.3, 0.5, 0.7)
FINETUNE_EPOCHS = 2
STUDENT = {"name": "blob-fcn", "options": {
    "channels": [16, 8], "strides": [1, 1], "kernel": 1, "pool": "max", "context": [9, 9, 5],
    "downsample": [2, 2, 2], "contrast_prior": 1.0}}


def _triage(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "triage", *argv], cwd=REPO, text=True,
                          capture_output=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"triage {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def prepare(args: argparse.Namespace) -> dict[str, Path]:
    """Exports, ingest and the trained parent and student (cached by size)."""
    from triage.configs import config_path

    root = OUT / f"n{args.studies}-e{args.epochs}"
    paths = {"root": root, "export": root / "export", "incoming": root / "incoming",
             "ingest": root / "ingest", "parent": root / "parent", "student": root / "student"}
    if not (paths["student"] / "bundle" / "bundle.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _triage("synth", str(paths["export"]), "--studies", str(args.studies), "--seed", "11",
                "--splits", SPLITS, *SYNTH)
        _triage("synth", str(paths["incoming"]), "--studies", str(args.incoming), "--seed",
                "12", *SYNTH)
        _triage("ingest", str(paths["export"]), "--out", str(paths["ingest"]), "--config",
                str(config_path("ingest", "synthetic")))
        common = ["--manifest", str(paths["export"] / "manifest.csv"), "--ingest",
                  str(paths["ingest"]), "--holdout-device-group", _holdout(paths),
                  "--epochs", str(args.epochs), "--json"]
        import yaml

        conf = yaml.safe_load(config_path("train", "demo").read_text())
        parent = root / "parent.yaml"
        parent.write_text(yaml.safe_dump(conf | {"model": PARENT}))
        _triage("train", *common, "--config", str(parent), "--out", str(paths["parent"]))
        student = root / "student.yaml"
        student.write_text(yaml.safe_dump(conf | {"model": STUDENT}))
        _triage("train", *common, "--config", str(student), "--out", str(paths["student"]),
                "--teacher", str(paths["parent"] / "bundle"))
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
    rows = []
    for name, bundle in (("fp32 torch", parent), ("ONNX fp32", onnx), ("ONNX int8", int8),
                         *((f"pruned {r:.0%} (torch)", b) for r, b in pruned.items()),
                         (f"pruned {top:.0%} + ONNX fp32", pruned_onnx),
                         ("distilled (torch)", student)):
        row = {"variant": name, "params": sum(v.numel() for k, v in bundle.state_dict.items()
                                              if "running" not in k and "num_batches" not in k),
               "file_mb": round(_file_mb(bundle), 3),
               "forward_ms": round(forward_ms(bundle, volumes, runtime=bundle.runtime,
                                              repeats=5), 2),
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
    return rows


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


def measure_runs(paths: dict[str, Path]) -> list[dict[str, Any]]:
    """`triage run` (torch, onnx, int8) and the MONAI peer on the incoming export."""
    rows = []
    env_threads = {"OMP_NUM_THREADS": str(THREADS)}
    for name, model, runtime in (("triage run, fp32 torch", paths["parent"] / "bundle", "torch"),
                                 ("triage run, ONNX fp32", paths["root"] / "variants/onnx",
                                  "onnx"),
                                 ("triage run, ONNX int8", paths["root"] / "variants/int8",
                                  "onnx")):
        out = paths["root"] / f"run-{runtime}-{model.name}"
        shutil.rmtree(out, ignore_errors=True)
        os.environ.update(env_threads)
        summary = json.loads(_triage("run", str(paths["incoming"]), "--model", str(model),
                                     "--out", str(out), "--workers", "2", "--runtime", runtime,
                                     "--device", "cpu", "--json"))
        rows.append({"pipeline": name, "studies": summary["processed"],
                     "seconds": summary["seconds"],
                     "studies_per_min": summary["studies_per_minute"]})
    rows.append(monai_peer(paths))
    return rows


def monai_peer(paths: dict[str, Path]) -> dict[str, Any]:
    """The same studies through a plain MONAI pipeline and the fp32 network."""
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
    series: dict[str, Path] = {}
    for path in sorted(paths["incoming"].rglob("*")):
        if path.is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM
                continue
            series.setdefault(ds.StudyInstanceUID, path.parent)
    lo, hi = pre.get("ct_window", [-200.0, 300.0])
    transform = Compose([
        LoadImaged("image", reader=PydicomReader()), EnsureChannelFirstd("image"),
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
    n = len(np.concatenate(scores)) if scores else 0
    return {"pipeline": "MONAI peer (LoadImage/PydicomReader ... DataLoader, 2 workers)",
            "studies": n, "seconds": round(seconds, 3),
            "studies_per_min": round(60 * n / seconds, 2)}


def section(variants: list[dict[str, Any]], runs: list[dict[str, Any]],
            meta: dict[str, Any]) -> str:
    lines = [
        "## Efficiency: model variants and a MONAI peer pipeline",
        "",
        f"`make bench-efficiency` ({meta['when']}, {meta['minutes']} min; {meta['machine']}, "
        f"{THREADS} threads; {meta['versions']}). Training export: {meta['studies']} "
        f"synthetic studies (`--matrix 96 --slices 24`, grid {meta['in_shape']}), held-out "
        f"device `{meta['holdout']}`; parent = the demo network with 3x3x3 convolutions "
        f"(blob-fcn, channels [32, 32, 16]) trained {meta['epochs']} epochs; pruned = "
        f"`triage export --prune R --finetune-epochs {FINETUNE_EPOCHS}` (L1 structured, "
        f"channels removed); student = blob-fcn with channels [16, 8], 1x1x1, distilled "
        f"from it (alpha 0.7, T 4). Every variant's temperature and thresholds are refitted "
        f"on its own calibration-split scores; *certified*: device groups whose routine "
        f"threshold is certified. Forward ms: median of 5 batches of 4 volumes, per volume. "
        f"Small sizes: {meta['n_test']} in-domain test and {meta['n_held_out']} held-out "
        f"studies, so an AUROC step is a few hundredths. Load average at the end of the "
        f"run: {meta['load']} (other processes shared the cores: timings are noisy).",
        "",
        "| variant | params | file MB | forward ms/volume | T | AUROC in-domain | "
        "AUROC held-out | ECE in-domain | ECE held-out | certified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in variants:
        lines.append(f"| {r['variant']} | {r['params']:,} | {r['file_mb']:.3f} | "
                     f"{r['forward_ms']:.2f} | {r['temperature']} | {r['test_auroc']} | "
                     f"{r['held_out_auroc']} | {r['test_ece']} | {r['held_out_ece']} | "
                     f"{r['certified']} |")
    lines += ["", "Goal (>= 2x the fp32 torch forward throughput, held-out AUROC within 1 point, "
              "no certified group lost): " + goal(variants)]
    lines += ["", f"Incoming export: {meta['incoming']} studies, 2 ingest workers, batch 4.", "",
              "| pipeline | studies | seconds | studies/min |", "|---|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['pipeline']} | {r['studies']} | {r['seconds']} | "
                     f"{r['studies_per_min']} |")
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
    parser.add_argument("--studies", type=int, default=96)
    parser.add_argument("--incoming", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--no-doc", action="store_true", help="print, do not edit the doc")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
    OUT.mkdir(parents=True, exist_ok=True)
    paths = prepare(args)
    variants = measure_variants(paths)
    runs = measure_runs(paths)
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
