"""The run benchmark's inputs, made once and cached under ``bench_output/run/``.

Exports come from `triage synth --no-extras`; each benchmarked network gets a bundle
trained for a few epochs on a separate small export, ingested on that network's grid. The
model's quality does not matter here, its forward cost does. A bundle is retrained when
its train or ingest config changes (their hash names its folder).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import run_logged
from triage.configs import config_path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "run"
EXPORT_SEED = 500  # + studies: the 100- and 400-study exports are different draws
MODEL_SEED = 900


@dataclass(frozen=True)
class Network:
    """A benchmarked model: how it is trained and on which grid its volumes are made.

    Attributes:
        key: short name used in file names and ``--networks``.
        title: what the doc calls it.
        train_config: the `triage train --config` file.
        ingest_config: the `triage ingest --config` file (the bundle records it, so
            `triage run` makes its volumes the same way).
        rounds: measured in at most this many rounds of ``--repeats`` (None: every round);
            keeps a network whose forward pass takes minutes from dominating the run.
    """

    key: str
    title: str
    train_config: Path
    ingest_config: Path
    rounds: int | None = None

    def digest(self) -> str:
        """8 hex digits over both configs: a changed config retrains the bundle."""
        data = self.train_config.read_bytes() + b"\0" + self.ingest_config.read_bytes()
        return hashlib.sha256(data).hexdigest()[:8]


NETWORKS = {
    "demo": Network("demo", "the demo's network", config_path("train", "demo"),
                    config_path("ingest", "synthetic")),
    "default": Network("default", "the default training config's network",
                       config_path("train", "default"),
                       config_path("ingest", "default")),
    "resnet18": Network("resnet18", "a heavier network (MONAI resnet18, 33 M parameters)",
                        REPO / "benchmarks/run/resnet18.yaml",
                        config_path("ingest", "default")),
    "resnet18-full": Network(
        "resnet18-full", "the heaviest network (resnet18 with MONAI's own full-resolution "
        "stem, conv1 stride 1)", REPO / "benchmarks/run/resnet18-full.yaml",
        config_path("ingest", "default"), rounds=1),
}


def triage_cmd(*argv: str) -> list[str]:
    """``python -m triage ARGV`` with this interpreter."""
    return [sys.executable, "-m", "triage", *argv]


def _synth(export: Path, studies: int, seed: int, matrix: int) -> list[str]:
    return triage_cmd("synth", str(export), "--studies", str(studies), "--seed", str(seed),
                      "--matrix", str(matrix), "--no-extras", "--workers", "2", "--overwrite")


def _cached_export(root: Path, studies: int, seed: int, matrix: int) -> Path:
    export = root / "export"
    if not (root / ".complete").exists():
        cmd = _synth(export, studies, seed, matrix)
        print(f"generating {export.relative_to(REPO)} ...", flush=True)
        run_logged(cmd, root / "synth.log", cwd=REPO)
        (root / ".complete").write_text(" ".join(cmd[2:]))
    return export


def prepare_export(studies: int, matrix: int) -> Path:
    """A synthetic export of `studies` studies, generated once."""
    return _cached_export(OUT / "exports" / f"s{studies}-m{matrix}", studies,
                          EXPORT_SEED + studies, matrix)


def prepare_model(network: Network, studies: int, matrix: int, epochs: int) -> Path:
    """The bundle of `network` trained `epochs` epochs on a separate `studies`-study export."""
    root = OUT / "model" / f"{network.key}-s{studies}-m{matrix}-e{epochs}-{network.digest()}"
    done = root / ".complete"
    if done.exists():
        return Path(done.read_text().strip())
    export = _cached_export(OUT / "model" / f"export-s{studies}-m{matrix}", studies,
                            MODEL_SEED, matrix)
    ingest = root / "ingest"
    print(f"training the {network.key} benchmark model in {root.relative_to(REPO)} ...",
          flush=True)
    run_logged(triage_cmd("ingest", str(export), "--out", str(ingest), "--config",
                          str(network.ingest_config), "--json"), root / "ingest.log", cwd=REPO)
    started = time.perf_counter()
    text = run_logged(triage_cmd("train", "--manifest", str(export / "manifest.csv"),
                                 "--ingest", str(ingest), "--config", str(network.train_config),
                                 "--out", str(root / "train"), "--epochs", str(epochs),
                                 "--run-name", f"run-benchmark-{network.key}", "--json"),
                      root / "train.log", cwd=REPO)
    bundle = Path(json.loads(text[text.index("{"):])["bundle"])
    (root / "train_seconds").write_text(f"{time.perf_counter() - started:.1f}")
    done.write_text(str(bundle))
    return bundle


def train_seconds(bundle: Path) -> str:
    """How long training the bundle took, as recorded when it was made."""
    for parent in bundle.parents:
        if (parent / "train_seconds").exists():
            return (parent / "train_seconds").read_text().strip()
    return "?"


def bundle_facts(bundle: Path) -> tuple[str, str]:
    """(network name, input shape) from the bundle's metadata."""
    try:
        meta = json.loads((bundle / "bundle.json").read_text())
        return (str(meta["model_config"]["name"]),
                "×".join(str(n) for n in meta["in_shape"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "?", "?"


def run_parser(description: str, studies: int, *, doc: bool = True) -> argparse.ArgumentParser:
    """The options every run benchmark takes: the export (``--studies``, ``--matrix``), the
    network and batch size of the model, and (`doc`) the document its section goes to."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--studies", type=int, default=studies)
    parser.add_argument("--network", default="demo", choices=sorted(NETWORKS))
    parser.add_argument("--matrix", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    if doc:
        parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    return parser


def worklist_rows(out: Path) -> list[dict]:
    """A run's worklist rows without the timestamp column (what two engines must agree on)."""
    with (out / "worklist.csv").open(encoding="utf-8", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "processed_at"}
                for row in csv.DictReader(fh)]
