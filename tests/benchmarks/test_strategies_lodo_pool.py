"""lodo's re-scoring of stored runs on a separate pool export (benchmarks/strategies/run.py),
with a real tiny bundle trained without `cygnus` and the tiny training set as the pool."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from benchmarks.strategies import report, run
from triage.data.dataset import CACHE_DIR, resolve_samples
from triage.data.manifest import read_manifest

HELD = "cygnus"


@pytest.fixture(scope="module")
def held_out_bundle(bundle_without_cygnus, tiny_training_set):
    """A tiny model trained without `HELD`; the training set doubles as the pool."""
    pool = {"manifest": tiny_training_set.manifest_path, "ingest": tiny_training_set.ingest_dir,
            "fingerprint": "pool-a", "synth_args": "--lesion-contrast -60", "studies": 49,
            "seed": 200, "matrix": 24, "devices": ["acme", "borealis", "cygnus", "ember"],
            "synth_s": 60.0, "ingest_s": 30.0, "cpu_s": 80.0}
    return bundle_without_cygnus, pool


def test_in_domain_and_held_out_use_disjoint_devices(held_out_bundle, tiny_training_set):
    bundle, pool = held_out_bundle
    row = run.pool_scores(bundle, HELD, pool, seed=0)
    # 6 studies x 2 labels per device; the failed study (acme) has no volume
    assert row["n_held_out"] == 12 and row["n_in_domain"] == 36
    samples = resolve_samples(read_manifest(pool["manifest"]), pool["ingest"]).samples
    cache = tiny_training_set.ingest_dir / CACHE_DIR
    inside = run.score(bundle, [s for s in samples if s.device_group != HELD], cache)
    held = run.score(bundle, [s for s in samples if s.device_group == HELD], cache)
    assert row["in_domain_auroc"] == pytest.approx(inside["auroc"])
    assert row["clean.auroc"] == pytest.approx(held["auroc"])
    assert row["clean.accuracy"] == pytest.approx(held["accuracy"])
    assert {f"{s}.auroc" for s in report.SHIFTS} <= set(row)
    with pytest.raises(ValueError, match="trained on acme"):
        run.pool_scores(bundle, "acme", pool, seed=0)


def test_pool_figures_are_resumed_from_the_runs_pool_json(held_out_bundle, tmp_path,
                                                          monkeypatch):
    bundle, pool = held_out_bundle
    shutil.copytree(bundle, tmp_path / "bundle")
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return {"n_in_domain": 36, "n_held_out": 12, "clean.auroc": 0.9,
                "seconds": 1.0, "cpu_seconds": 1.0}

    monkeypatch.setattr(run, "pool_scores", counted)
    row = {"variant": "baseline", "seed": 1, "device": HELD, "clean.auroc": 0.99}
    first = run.with_lodo_pool(row, tmp_path, HELD, 1, pool)
    assert first["pool.clean.auroc"] == 0.9 and first["clean.auroc"] == 0.99
    assert len(calls) == 1 and calls[0][1:] == (HELD, pool, 1)
    assert run.with_lodo_pool(row, tmp_path, HELD, 1, pool) == first
    assert len(calls) == 1  # read from pool.json
    run.with_lodo_pool(row, tmp_path, HELD, 1, {**pool, "fingerprint": "pool-b"})
    assert len(calls) == 2
    assert set(json.loads((tmp_path / run.POOL_FILE).read_text())) == {"pool-a", "pool-b"}
    assert run.with_lodo_pool(row, tmp_path, HELD, 1, None) == row


def test_lodo_mode_rescores_finished_runs_without_training(held_out_bundle, tiny_training_set,
                                                           tmp_path, monkeypatch):
    bundle, pool = held_out_bundle
    monkeypatch.setattr(run, "OUT", tmp_path)
    monkeypatch.setattr(run, "lodo_pool", lambda args, devices: pool)

    def fail(*args, **kwargs):
        raise AssertionError("lodo mode trained a finished run")

    monkeypatch.setattr(run, "train", fail)
    args = argparse.Namespace(
        mode="lodo", manifest=tiny_training_set.manifest_path,
        ingest=tiny_training_set.ingest_dir, folds=HELD, seed_list=[0, 1],
        variants=["baseline", "layered"], config=run.TRAIN_CONFIG, epochs=0, no_pool=False,
        no_train=True, command="python -m benchmarks.strategies.run --mode lodo", when="now")
    for variant in args.variants:
        for seed in args.seed_list:
            out = tmp_path / "lodo" / "runs" / HELD / f"{variant}-seed{seed}"
            shutil.copytree(bundle, out / "bundle")
            run.keep_row(out, run.config_for(variant, seed, args, None),
                         {"variant": variant, "seed": seed, "device": HELD,
                          "in_domain_auroc": 0.99, "clean.auroc": 0.98})
    rows, text = run.run_lodo(args)
    assert len(rows) == 4 and all(r["clean.auroc"] == 0.98 for r in rows)
    assert all((tmp_path / "lodo" / "runs" / HELD / f"{r['variant']}-seed{r['seed']}"
                / run.POOL_FILE).is_file() for r in rows)
    assert all(r["pool.n_held_out"] == 12 for r in rows)
    # the same bundle in every run: no gain over the baseline, so that target is missed
    line = next(x for x in text.splitlines() if x.startswith(f"| `{HELD}` | 0."))
    assert line.endswith("| +0.000 | 0.000 | missed |")
    assert "gain beyond the seed spread on 0/1" in text
    assert "`--lesion-contrast -60`" in text and "On each run's own test sets" in text
    metrics = run.target_metrics(rows)
    assert metrics["pool.targets.gain_met_folds"] == 0
    assert metrics["pool.targets.worst_held_out_auroc"] == pytest.approx(rows[0]
                                                                         ["pool.clean.auroc"])
    # a run without a finished row stops the re-scoring instead of training
    shutil.rmtree(tmp_path / "lodo" / "runs" / HELD / "layered-seed1")
    with pytest.raises(SystemExit, match="--no-train"):
        run.run_lodo(args)


def test_pool_table_renders_each_folds_verdicts():
    def rows_for(device, base, full, in_domain, step):
        return [{"variant": v, "device": device, "seed": s, "pool.in_domain_auroc": in_domain,
                 "pool.clean.auroc": x + step * s}
                for v, x in (("baseline", base), ("full", full)) for s in (0, 1, 2)]

    rows = rows_for("a", 0.85, 0.90, 0.92, 0.01) + rows_for("b", 0.80, 0.81, 0.90, 0.02)
    lines = report.lodo_pool_table(rows, ["a", "b"], "full").splitlines()
    assert lines[0].startswith("| held-out device | in-domain AUROC baseline |")
    assert lines[2].split(" | ")[5:] == ["0.010 (met)", "+0.050", "0.010", "met |"]
    assert lines[3].split(" | ")[5:] == ["0.070 (missed)", "+0.010", "0.020", "missed |"]
    # the standard error of the difference: a 0.0082 (gain 0.05), b 0.0163 (gain 0.01)
    assert lines[-1] == ("In-domain gap target met on 1/2 folds; gain beyond the seed spread "
                         "on 1/2 (beyond the standard error of the difference of the means, "
                         "sqrt(sd_full² / n + sd_baseline² / n), on 1/2). Worst fold: `b`, full "
                         "held-out AUROC 0.830.")
    one_seed = [r for r in rows if r["seed"] == 0]
    assert "| not judged |" in report.lodo_pool_table(one_seed, ["a"], "full")


def test_pool_difficulty_replaces_only_the_lesion_flags():
    args = run.harder(f"{run.DIFFICULTY} --device-noise cygnus=50", run.LODO_POOL_LESION)
    assert args == f"--slices 40 --device-noise cygnus=50 {run.LODO_POOL_LESION}"
