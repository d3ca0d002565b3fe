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


def test_device_scores_give_each_pool_device_its_own_figures(held_out_bundle):
    bundle, pool = held_out_bundle
    devices = run.device_scores(bundle, pool)
    samples = resolve_samples(read_manifest(pool["manifest"]), pool["ingest"]).samples
    assert sorted(devices) == sorted({s.device_group for s in samples})
    row = run.pool_scores(bundle, HELD, pool, seed=0)
    held = devices[HELD]
    # the held-out device's figures are the pool row's clean ones; the others sum to in-domain
    assert held["auroc"] == pytest.approx(row["clean.auroc"])
    assert held["n"] == row["n_held_out"]
    assert sum(v["n"] for v in devices.values()) == row["n_in_domain"] + row["n_held_out"]


def test_an_entry_scored_before_the_device_figures_gets_them_once(held_out_bundle, tmp_path,
                                                                  monkeypatch):
    bundle, pool = held_out_bundle
    shutil.copytree(bundle, tmp_path / "bundle")
    old = {"n_in_domain": 36, "n_held_out": 12, "clean.auroc": 0.9, "seconds": 1.0,
           "cpu_seconds": 1.0}
    (tmp_path / run.POOL_FILE).write_text(json.dumps({pool["fingerprint"]: old}))
    monkeypatch.setattr(run, "pool_scores", lambda *a, **k: pytest.fail("re-scored the pool"))
    calls = []
    real = run.device_scores
    monkeypatch.setattr(run, "device_scores", lambda *a: calls.append(a) or real(*a))
    row = {"variant": "baseline", "seed": 0, "device": HELD}
    first = run.with_lodo_pool(row, tmp_path, HELD, 0, pool)
    assert first["pool.clean.auroc"] == 0.9  # the stored entry kept
    device_keys = [k for k in first if k.startswith("pool.device.") and k.endswith(".auroc")]
    assert len(device_keys) == 4 and len(calls) == 1
    stored = json.loads((tmp_path / run.POOL_FILE).read_text())[pool["fingerprint"]]
    assert set(stored[run.DEVICES_KEY]) == {k.split(".")[2] for k in device_keys}
    assert run.with_lodo_pool(row, tmp_path, HELD, 0, pool) == first
    assert len(calls) == 1  # read back, not scored again


def test_headroom_table_compares_a_device_held_out_with_the_folds_that_trained_on_it():
    def rows_for(device, held, others, step):
        return [{"variant": v, "device": device, "seed": s, "pool.clean.auroc": h + step * s,
                 "pool.in_domain_auroc": 0.9,
                 **{f"pool.device.{d}.auroc": w for d, w in others.items()}}
                for v, h in held.items() for s in (0, 1, 2)]

    # a: the baseline loses 0.08 held out (room to gain); b: 0.005, within its spread
    rows = (rows_for("a", {"baseline": 0.80, "full": 0.86}, {"b": 0.905}, 0.01)
            + rows_for("b", {"baseline": 0.90, "full": 0.90}, {"a": 0.89}, 0.02))
    folds = report.lodo_headroom(rows, ["a", "b"], "baseline")
    assert [f["n_with"] for f in folds] == [3, 3]
    assert folds[0]["headroom"] == pytest.approx(0.89 - 0.81)
    assert folds[1]["headroom"] == pytest.approx(0.905 - 0.92)
    lines = report.lodo_headroom_table(rows, ["a", "b"], "full").splitlines()
    assert lines[0].startswith("| held-out device | baseline held out | baseline trained with")
    assert lines[2].split(" | ")[3] == "+0.080" and lines[2].endswith("| 0.010 | yes |")
    assert lines[3].split(" | ")[3] == "-0.015" and lines[3].endswith("| 0.020 | no |")
    assert lines[-1] == ("The baseline loses more than the seed spread by not seeing the "
                         "device on 1/2 folds.")
    metrics = run.target_metrics(rows)
    assert metrics["a.pool.headroom.baseline"] == pytest.approx(0.08)
    assert metrics["b.pool.headroom.full"] == pytest.approx(0.905 - 0.92)
    # a fold no other fold's model was trained alongside: left out, not invented
    assert len(report.lodo_headroom(rows_for("a", {"baseline": 0.8}, {}, 0.0), ["a"],
                                    "baseline")) == 0


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
    assert "What seeing a device in training adds on it" in text
    assert all(f"pool.device.{HELD}.auroc" in r for r in rows)
    metrics = run.target_metrics(rows)
    assert metrics["pool.targets.gain_met_folds"] == 0
    # one fold: no other fold's model trained on the held-out device, so no headroom
    assert not any(".pool.headroom." in key for key in metrics)
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
