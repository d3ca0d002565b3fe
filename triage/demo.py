"""`make demo`: the whole pipeline, end to end, on fresh synthetic exports.

A multi-device training export and a separate "incoming" export are generated; the
training export is ingested, a classifier is trained, calibrated and tracked in MLflow,
registered, gated and promoted to ``@champion``; then ``triage run`` triages the incoming
export with ``models:/<name>@champion`` into worklists. Every step is a ``triage`` command,
printed as it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

from triage.cli import main as triage_main
from triage.configs import config_path

INGEST_CONFIG = config_path("ingest", "synthetic")
TRAIN_CONFIG = config_path("train", "demo")
GATES = config_path("promotion", "demo")
# Marginal guarantee, per device where a device has enough calibration positives, else
# pooled where the shift check allows: certifies devices on the demo's small split.
RULES = config_path("rules", "demo")
MODEL_NAME = "triage-demo"
# The documented default difficulty of the synthetic task (docs/synthetic_data.md).
SYNTH_FLAGS: list[str] = ["--matrix", "128", "--slices", "40", "--lesion-size", "14,24",
                          "--lesion-contrast", "-90"]
# Render studies in two processes (the output does not depend on it): the demo's 2 cores.
SYNTH_WORKERS: list[str] = ["--workers", "2"]
# A larger calibration split than the default 15 %, so that the demo's devices have enough
# calibration positives and negatives to certify (docs/calibration.md, "Guarantee modes").
TRAIN_SPLITS = "train=0.5,val=0.1,calib=0.3,test=0.1"


def _step(title: str, argv: list[str], *, ok_codes: tuple[int, ...] = (0,),
          capture: bool = False) -> tuple[int, str]:
    print(f"\n== {title}: triage {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
        code = triage_main(argv)
    if code not in ok_codes:
        if capture:
            print(buffer.getvalue())
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    return code, buffer.getvalue()


def run(out: Path, studies: int, incoming: int, seed: int, epochs: int | None = None) -> None:
    """Run the demo into `out` (replaced)."""
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    uri = os.environ.setdefault("MLFLOW_TRACKING_URI",
                                f"sqlite:///{(out / 'mlflow.db').resolve()}")
    train_export, incoming_export = out / "train_export", out / "incoming_export"
    manifest = train_export / "manifest.csv"
    _step("synthetic training export", ["synth", str(train_export), "--studies", str(studies),
                                        "--seed", str(seed), "--splits", TRAIN_SPLITS,
                                        *SYNTH_FLAGS, *SYNTH_WORKERS])
    _step("synthetic incoming export", ["synth", str(incoming_export), "--studies",
                                        str(incoming), "--seed", str(seed + 1000),
                                        *SYNTH_FLAGS, *SYNTH_WORKERS])
    _step("validate manifest", ["manifest", "validate", str(manifest)])
    _step("ingest training export", ["ingest", str(train_export), "--out",
                                     str(out / "ingest"), "--config", str(INGEST_CONFIG)])
    _, text = _step("train + calibrate + evaluate", [
        "train", "--manifest", str(manifest), "--ingest", str(out / "ingest"),
        "--config", str(TRAIN_CONFIG), "--out", str(out / "train"), "--run-name", "demo",
        "--rules", str(RULES),
        "--json", *(["--epochs", str(epochs)] if epochs else [])], capture=True)
    trained = json.loads(text)
    _, text = _step("register", ["register", "--run-id", trained["run_id"], "--name",
                                 MODEL_NAME], capture=True)
    print(text.strip())
    code, gate_text = _step("promote (gates on the training export's test split)", [
        "promote", "--name", MODEL_NAME, "--model-version", "1", "--manifest", str(manifest),
        "--ingest", str(out / "ingest"), "--split", "test", "--gates", str(GATES)],
        ok_codes=(0, 1), capture=True)
    print(gate_text.strip())
    model = f"models:/{MODEL_NAME}@champion" if code == 0 else str(out / "train" / "bundle")
    if code:
        print(f"   the gates refused the model: triaging with the local bundle {model} instead")
    _, text = _step("triage the incoming export", [
        "run", str(incoming_export), "--model", model, "--out", str(out / "run"), "--json"],
        capture=True)
    summary = json.loads(text)
    print("\nCertification of the model's routing thresholds:")
    from triage.route.status import status_lines

    print("\n".join(status_lines(summary["certification"])))
    print("\nRoutes of the incoming studies:")
    for route, count in sorted((summary.get("route") or {}).items()):
        print(f"  {route:8s} {count}")
    print(f"\nWorklists: {out / 'run' / 'worklist.csv'}\n"
          f"           {out / 'run' / 'review_worklist.csv'}\n"
          f"MLflow:    {uri}\n"
          f"  open the UI with: mlflow ui --backend-store-uri {uri}\n"
          f"Demo finished in {(time.perf_counter() - started) / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--studies", type=int, default=300, help="training export studies")
    parser.add_argument("--incoming", type=int, default=40, help="incoming export studies")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the demo config's epochs (e.g. 1 for a smoke run)")
    args = parser.parse_args(argv)
    run(args.out, args.studies, args.incoming, args.seed, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
