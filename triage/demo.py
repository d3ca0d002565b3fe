"""`make demo`: run every stage that exists, end to end, on a fresh synthetic export."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from triage.cli import main as triage_main


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: triage {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = triage_main(argv)
    if code:
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


REPO = Path(__file__).resolve().parents[1]
INGEST_CONFIG = REPO / "pipelines" / "ingest" / "synthetic.yaml"
TRAIN_CONFIG = REPO / "pipelines" / "train" / "demo.yaml"


def run(out: Path, studies: int, seed: int) -> None:
    """Generate a training export, validate its manifest, ingest it, train and evaluate a
    model tracked in MLflow (later stages as they land)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(out / 'mlflow.db').resolve()}")
    export = out / "export"
    manifest = out / "manifest.csv"
    _step("synthetic PACS export", ["synth", str(export), "--studies", str(studies),
                                    "--seed", str(seed), "--manifest", str(manifest)])
    _step("validate manifest", ["manifest", "validate", str(manifest)])
    _step("ingest", ["ingest", str(export), "--out", str(out / "ingest"),
                     "--config", str(INGEST_CONFIG)])
    _step("train + calibrate + evaluate", [
        "train", "--manifest", str(manifest), "--ingest", str(out / "ingest"),
        "--config", str(TRAIN_CONFIG), "--out", str(out / "train"), "--run-name", "demo"])
    print(f"\nDemo output in {out}\nMLflow: {os.environ['MLFLOW_TRACKING_URI']}\n"
          f"  open the UI with: mlflow ui --backend-store-uri "
          f"{os.environ['MLFLOW_TRACKING_URI']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--studies", type=int, default=160)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    run(args.out, args.studies, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
