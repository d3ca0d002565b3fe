"""The quality benchmark's scores on a separate test export, from a real trained bundle."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from benchmarks.quality.pool import METRICS, pool_rows
from triage.calibrate import binary_report, probabilities


@pytest.fixture(scope="module")
def lodo_bundle(bundle_without_cygnus, tiny_training_set, tmp_path_factory):
    """A tiny model trained without `cygnus`, and a copy of the set to score as the pool."""
    pool = tmp_path_factory.mktemp("pool") / "pool"
    shutil.copytree(tiny_training_set.ingest_dir.parent, pool)
    rel = tiny_training_set.ingest_dir.relative_to(tiny_training_set.ingest_dir.parent)
    manifest = tiny_training_set.manifest_path.relative_to(tiny_training_set.ingest_dir.parent)
    return bundle_without_cygnus, {"manifest": pool / manifest, "ingest": pool / rel}


def test_pool_rows_split_the_export_by_the_devices_the_model_saw(lodo_bundle):
    from benchmarks.triage.data import score_pool

    bundle, pool = lodo_bundle
    rows = pool_rows(bundle, "cygnus", pool)
    frame, _ = score_pool(bundle, pool["manifest"], pool["ingest"])
    held = (frame["device_group"] == "cygnus").to_numpy()
    assert rows["False"]["n_held_out"] == held.sum() == 12
    assert rows["False"]["n_in_domain"] == (~held).sum()
    logits, labels = frame[["z0", "z1"]].to_numpy(), frame["label"].to_numpy()
    for row in rows.values():
        p = probabilities(logits, row["temperature"])
        expected = binary_report(p[held], labels[held])
        for key in METRICS:
            assert row[f"held_out_{key}"] == pytest.approx(expected[key], nan_ok=True)
        assert row["auroc_gap"] == pytest.approx(
            row["in_domain_auroc"] - row["held_out_auroc"], nan_ok=True)
    assert rows["False"]["temperature"] == 1.0
    assert rows["True"]["temperature"] != 1.0
    assert np.isfinite(rows["True"]["held_out_nll"])
    assert pool_rows(bundle, "a-device-not-in-the-pool", pool) is None


def test_triage_calibration_on_an_unseen_device(lodo_bundle, tmp_path):
    """`benchmarks.triage.run.held_out_pool`: temperature fitted on the devices the model
    saw, ECE measured on every study of the one it did not."""
    from benchmarks.triage.data import score_pool
    from benchmarks.triage.run import held_out_pool
    from triage.calibrate import ece, fit_temperature

    bundle, pool = lodo_bundle
    runs = tmp_path / "runs"
    shutil.copytree(bundle, runs / "cygnus" / "focal+dp-seed0" / "bundle")
    shutil.copytree(bundle, runs / "cygnus" / "baseline-seed0" / "bundle")  # not focal+dp
    found = held_out_pool([pool], runs)
    assert found["device"] == "cygnus" and len(found["runs"]) == 1
    (run,) = found["runs"]
    assert run["n"] == 12 and run["calibrated_on"] == ["acme", "borealis", "ember"]
    frame, _ = score_pool(runs / "cygnus" / "focal+dp-seed0" / "bundle", pool["manifest"],
                          pool["ingest"])
    held = (frame["device_group"] == "cygnus").to_numpy()
    logits, labels = frame[["z0", "z1"]].to_numpy(), frame["label"].to_numpy()
    temperature = fit_temperature(logits[~held], labels[~held])
    assert run["temperature"] == pytest.approx(temperature)
    p = probabilities(logits[held], temperature)
    assert run["after"]["ece"] == pytest.approx(ece(p, labels[held], 15))
    assert found["ece"] == [run["after"]["ece"]]
    assert held_out_pool([pool], tmp_path / "no-runs") is None
