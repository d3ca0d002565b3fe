"""The triage benchmark's inputs, made once and cached under ``bench_output/triage/``.

- the **model**: trained once by `triage.train.run.train_model` on a 500-study export of
  all five devices (`training_export`, made like the quality benchmark's, no held-out
  device) with the quality recipe + focal + device
  perturbation (`benchmarks.quality.run.CONFIGS["focal+dp"]`);
- the **pool**: a separate synthetic export (another seed, the same difficulty), ingested
  with `triage/configs/ingest/synthetic.yaml`, large enough that every device's calibration part
  of a redraw holds >= 299 positives;
- the **scores**: the model's logits for every pool study that ingest turned into a volume,
  with the ingest facts the rules read (verdict, slice count, modality).

Each step is skipped when its output exists for the same arguments (the arguments name the
folder, a ``.complete`` file marks it finished).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import run_logged
from triage.configs import config_path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench_output" / "triage"
INGEST_CONFIG = config_path("ingest", "synthetic")
TRAIN_CONFIG = config_path("train", "quality")
VARIANT = "focal+dp"
#: The model's training export: 1,500 studies of all five devices (900 in its train split),
#: data seed 0, made by the quality benchmark's `prepare` at the pool's difficulty
#: (`SYNTH_ARGS`; the quality benchmark's own default adds a noisier `cygnus`). Three times
#: the quality benchmark's 500: auto-clearing is decided by the lowest-scoring positives,
#: and more training data lifts that tail (docs/benchmarks.md, triage section).
TRAIN_EXPORT = {"studies": 1500, "matrix": 128, "data_seed": 0}
#: The documented default difficulty (docs/synthetic_data.md), as the quality benchmark.
SYNTH_ARGS = "--slices 40 --lesion-size 14,24 --lesion-contrast -90"


def shown(path: Path) -> str:
    """`path` relative to the repository when inside it (as the reports print paths)."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def pool_root(devices: list[str], studies: int, seed: int, matrix: int = 128,
              synth_args: str = SYNTH_ARGS) -> Path:
    """The cache folder of one pool export; every argument is part of its name."""
    knobs = hashlib.sha256(f"{matrix} {synth_args}".encode()).hexdigest()[:8]
    return OUT / "data" / f"pool-{'+'.join(devices)}-s{studies}-seed{seed}-{knobs}"


def prepare_pool(devices: list[str], studies: int, seed: int, *, matrix: int = 128,
                 synth_args: str = SYNTH_ARGS, workers: int = 2,
                 root: Path | None = None) -> dict[str, object]:
    """Generate and ingest the pool export once; paths and timings.

    Args:
        devices: `triage synth --devices` profiles (studies rotate round-robin over them).
        studies: studies in all.
        seed: the export's seed (the model's export uses 0).
        matrix: ``--matrix``.
        synth_args: the difficulty flags.
        workers: ``--workers`` of the generator (and of ingest).
        root: the cache folder; `pool_root`'s by default (another benchmark's pool lives
            under its own output folder, named the same way).

    Returns:
        ``manifest``, ``ingest`` (paths) and ``synth_s``, ``ingest_s`` (seconds; from the
        first run when cached).
    """
    root = root or pool_root(devices, studies, seed, matrix, synth_args)
    export, ingest, done = root / "export", root / "ingest", root / ".complete"
    if not done.exists():
        # An unfinished earlier attempt (killed mid-way) is this harness's own: start over.
        shutil.rmtree(export, ignore_errors=True)
        shutil.rmtree(ingest, ignore_errors=True)
        synth = [sys.executable, "-m", "triage", "synth", str(export), "--studies", str(studies),
                 "--seed", str(seed), "--matrix", str(matrix), "--devices", ",".join(devices),
                 "--no-extras", "--thick-fraction", "0", *synth_args.split(), "--workers",
                 str(workers), "--overwrite"]
        print(f"generating {shown(export)} ({studies} studies) ...", flush=True)
        started, cpu = time.perf_counter(), _children_cpu()
        run_logged(synth, root / "synth.log", cwd=REPO)
        synth_s, synth_cpu_s = time.perf_counter() - started, _children_cpu() - cpu
        print(f"  {synth_s:.0f} s; ingesting ...", flush=True)
        started, cpu = time.perf_counter(), _children_cpu()
        run_logged([sys.executable, "-m", "triage", "ingest", str(export), "--out", str(ingest),
                    "--config", str(INGEST_CONFIG), "--workers", str(workers), "--json"],
                   root / "ingest.log", cwd=REPO)
        ingest_s, ingest_cpu_s = time.perf_counter() - started, _children_cpu() - cpu
        print(f"  {ingest_s:.0f} s", flush=True)
        done.write_text(json.dumps({"synth": synth, "synth_s": synth_s,
                                    "ingest_s": ingest_s, "synth_cpu_s": synth_cpu_s,
                                    "ingest_cpu_s": ingest_cpu_s}, indent=1))
    info = json.loads(done.read_text())
    return {"manifest": export / "manifest.csv", "ingest": ingest,
            "synth_s": info["synth_s"], "ingest_s": info["ingest_s"],
            "cpu_s": info.get("synth_cpu_s", math.nan) + info.get("ingest_cpu_s", math.nan),
            "root": root}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes."""
    times = os.times()
    return times.children_user + times.children_system


#: On top of the quality recipe: context statistics over tissue only, so that lesions at
#: the liver's edge keep their contrast (docs/training.md, "Lesions at an organ's edge"),
#: with the floor judged on a 3x3x3 median so that noise does not move tissue across it.
TISSUE_FLOOR = 0.25
TISSUE_MASK = "median"


def train_config(seed: int = 0):
    """The quality recipe with the focal+dp overrides (`benchmarks.quality.run.CONFIGS`)
    and blob-fcn's `TISSUE_FLOOR` and `TISSUE_MASK`."""
    from benchmarks.quality.run import CONFIGS
    from triage.train.config import TrainConfig

    config = TrainConfig.from_yaml(TRAIN_CONFIG).replace(
        runtime={"seed": seed, "experiment": "triage-benchmark"}, **CONFIGS[VARIANT])
    options = {**config.model.options, "tissue_floor": TISSUE_FLOOR,
               "tissue_mask": TISSUE_MASK}
    return config.replace(model={"name": config.model.name, "options": options})


def training_export() -> tuple[Path, Path]:
    """The model's training export (manifest, ingest folder), generated on first use."""
    import argparse

    from benchmarks.quality.run import prepare

    return prepare(argparse.Namespace(**TRAIN_EXPORT, synth_args=SYNTH_ARGS))


def _train_once(out: Path, config: Any, run_name: str, holdout: str | None = None
                ) -> dict[str, Any]:
    """Train `config` on `training_export` into `out` unless ``out/.complete`` exists.

    Returns:
        What ``.complete`` records: ``seconds``, ``temperature``, ``data`` (the export's
        folder), ``fingerprint`` and ``holdout``.
    """
    done = out / ".complete"
    if not done.exists():
        from triage.train.run import train_model

        manifest, ingest = training_export()
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{OUT / 'mlflow.db'}")
        without = f" (without {holdout})" if holdout else ""
        print(f"training {out.relative_to(REPO)}{without} ...", flush=True)
        started = time.perf_counter()
        outcome = train_model(manifest_path=manifest, ingest_dir=ingest, config=config,
                              out_dir=out, holdout_device=holdout, progress=False,
                              run_name=run_name, log_model=False)
        seconds = time.perf_counter() - started
        print(f"  {seconds:.0f} s, T = {outcome.temperature:.3f}", flush=True)
        done.write_text(json.dumps({
            "seconds": seconds, "temperature": outcome.temperature,
            "data": str(manifest.parent.parent.relative_to(REPO)),
            "fingerprint": config.fingerprint(), "holdout": holdout}, indent=1))
    return json.loads(done.read_text())


def prepare_model(seed: int = 0) -> dict[str, object]:
    """Train the benchmark's model once on `training_export` (all devices); bundle path.

    The folder is named by the training export's size and the config fingerprint: another
    export or another recipe trains another model.
    """
    config = train_config(seed)
    out = (OUT / "model" / f"{VARIANT}-seed{seed}-s{TRAIN_EXPORT['studies']}-"
                           f"{config.fingerprint()[:8]}")
    info = _train_once(out, config, f"triage-{VARIANT}")
    return {"bundle": out / "bundle", "train_s": info["seconds"], "data": info["data"],
            "root": out}


#: The device the leave-one-device-out models never see (its device group).
HELD_OUT = "cygnus-medical-systems-helix-16"


def prepare_lodo_models(seeds: Sequence[int], holdout: str = HELD_OUT) -> Path:
    """Train the model's recipe on `training_export` without `holdout`, once per seed.

    The same export and recipe as `prepare_model`, minus one device: the models behind
    the held-out-device calibration (`run.held_out_pool`). Cached per export size and
    config fingerprint.

    Returns:
        The runs folder: ``<runs>/<holdout>/focal+dp-seed<n>/bundle``, the layout of the
        quality benchmark's ``bench_output/quality/runs``.
    """
    runs = OUT / "lodo" / f"s{TRAIN_EXPORT['studies']}-{train_config(0).fingerprint()[:8]}"
    for seed in seeds:
        _train_once(runs / holdout / f"{VARIANT}-seed{seed}", train_config(seed),
                    f"triage-{VARIANT}-lodo-seed{seed}", holdout)
    return runs


def score_pool(bundle_dir: Path, manifest: Path, ingest: Path, *,
               batch_size: int = 32) -> tuple[pd.DataFrame, dict[str, object]]:
    """Logits of every pool study with a cached volume, cached next to the ingest output.

    Returns:
        one row per scored study (``study_uid, device_group, label, z0, z1, verdict,
        n_slices, modality``), and ``{"score_s", "excluded"}`` (excluded: manifest studies
        ingest rejected, per device group).
    """
    from triage.data.dataset import CACHE_DIR, resolve_samples
    from triage.data.manifest import read_manifest
    from triage.registry.bundle import load_bundle

    weights = hashlib.sha256((bundle_dir / "bundle.json").read_bytes()).hexdigest()[:8]
    path = ingest.parent / f"scores-{weights}.csv"
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        from triage.data.dataset import load_array
        from triage.preprocess.cache import VolumeCache

        bundle = load_bundle(bundle_dir)
        resolved = resolve_samples(read_manifest(manifest), ingest)
        cache = VolumeCache(ingest / CACHE_DIR)
        report = pd.read_csv(ingest / "ingest_report.csv", dtype=str, keep_default_na=False)
        facts = report.set_index("study_uid")
        started = time.perf_counter()
        logits = []
        samples = resolved.samples
        for start in range(0, len(samples), batch_size):
            batch = [load_array(cache, s) for s in samples[start:start + batch_size]]
            logits.append(bundle.predict_logits(np.stack(batch), device="cpu",
                                                batch_size=batch_size))
        z = np.concatenate(logits)
        score_s = time.perf_counter() - started
        frame = pd.DataFrame({
            "study_uid": [s.study_uid for s in samples],
            "device_group": [s.device_group for s in samples],
            "label": [s.label for s in samples], "z0": z[:, 0], "z1": z[:, 1],
            "verdict": [facts.at[s.study_uid, "verdict"] for s in samples],
            "n_slices": [int(facts.at[s.study_uid, "n_slices"] or 0) for s in samples],
            "modality": [facts.at[s.study_uid, "modality"] for s in samples]})
        frame.to_csv(path, index=False)
        groups = read_manifest(manifest).set_index("study_uid")["device_group"]
        excluded: dict[str, int] = {}
        for uid, _ in resolved.excluded:
            excluded[groups[uid]] = excluded.get(groups[uid], 0) + 1
        meta_path.write_text(json.dumps({"score_s": score_s, "excluded": excluded,
                                         "bundle": shown(bundle_dir)},
                                        indent=1))
    return (pd.read_csv(path, dtype={"study_uid": str}),
            json.loads(meta_path.read_text()))


def score_pools(bundle_dir: Path, pools: list[dict[str, Any]]
                ) -> tuple[pd.DataFrame, dict[str, object]]:
    """`score_pool` over several pool exports (`prepare_pool` results), one frame.

    Returns:
        the rows of every export in order, and ``{"score_s"}`` summed and ``{"excluded"}``
        added up per device group.
    """
    frames, score_s, excluded = [], 0.0, {}
    for pool in pools:
        frame, info = score_pool(bundle_dir, pool["manifest"], pool["ingest"])
        frames.append(frame)
        score_s += info["score_s"]
        for group, n in info["excluded"].items():
            excluded[group] = excluded.get(group, 0) + n
    frame = pd.concat(frames, ignore_index=True)
    if frame["study_uid"].duplicated().any():
        raise ValueError("The pool exports share studies; use different seeds.")
    return frame, {"score_s": score_s, "excluded": excluded}
