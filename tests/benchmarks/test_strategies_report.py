"""Report formatting of the strategies benchmarks (benchmarks/strategies/report.py), the
held-out shifts and the site-adaptation manifest."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.strategies import report
from benchmarks.strategies.run import (
    TRAIN_CONFIG,
    VARIANTS,
    shift_volume,
    site_manifest,
    trained_bundle,
)


def test_table1_puts_the_seed_study_beside_ours():
    rows = [{"variant": "baseline", "seed": s, "accuracy": a, "macro_f1": 0.7, "nll": 0.4,
             "ece": 0.05, "held_out_accuracy": 0.6, "held_out_auroc": 0.8}
            for s, a in ((0, 0.8), (1, 0.9))]
    rows.append({"variant": "transfer", "seed": 0, "accuracy": 0.85,
                 "held_out_auroc": math.nan})
    text = report.table1(rows, list(VARIANTS)).splitlines()
    assert text[0].startswith("| strategy | seeds | accuracy | macro-F1 | NLL | ECE |")
    assert text[0].endswith("| seed study acc | seed study cross-domain acc |")
    assert len(text) == 2 + len(VARIANTS)
    assert text[2] == ("| baseline | 2 | 0.850 ± 0.071 | 0.700 ± 0.000 | 0.400 ± 0.000 | "
                       "0.050 ± 0.000 | 0.600 ± 0.000 | 0.800 ± 0.000 | 0.812 | 0.701 |")
    assert text[3] == "| layered | 0 | – | – | – | – | – | – | ? | ? |"
    assert text[4] == "| transfer | 1 | 0.850 | – | – | – | – | – | 0.846 | 0.752 |"
    assert text[6].endswith("| 0.867 | 0.781 |")


def test_lodo_table_has_a_row_per_fold_and_a_mean():
    rows = [{"variant": "combined", "seed": 0, "device": d,
             **{f"{s}.accuracy": 0.9 for s in report.SHIFTS},
             **{f"{s}.auroc": 0.95 for s in report.SHIFTS}} for d in ("acme", "cygnus")]
    rows[1]["noise.accuracy"] = 0.7
    text = report.lodo_table(rows, ["acme", "cygnus"]).splitlines()
    assert text[0] == ("| held-out device | variant | clean acc / AUROC | noise acc / AUROC | "
                       "gain_offset acc / AUROC | blur acc / AUROC |")
    assert text[2].startswith("| `acme` | combined | 0.900 / 0.950 |")
    assert text[3].split(" | ")[3] == "0.700 / 0.950"
    assert text[4].startswith("| mean over folds | combined | 0.900 ± 0.000 / 0.950 ± 0.000 "
                              "| 0.800 ± 0.141 / 0.950 ± 0.000 |")


def test_site_table_arms_by_labelled_studies():
    rows = [{"arm": arm, "n_labelled": n, "seed": 0, "accuracy": 0.5 + n / 1000,
             "auroc": 0.6, "ece": 0.05} for arm in report.SITE_ARMS for n in (50, 100)]
    text = report.site_table(rows, [50, 100]).splitlines()
    assert text[0] == ("| arm | 50 labelled: acc / AUROC / ECE | 100 labelled: acc / AUROC / "
                       "ECE |")
    assert [line.split(" | ")[0] for line in text[2:]] == [
        "| zero-shot", "| fine-tuned", "| from scratch"]
    assert text[2] == "| zero-shot | 0.550 / 0.600 / 0.050 | 0.600 / 0.600 / 0.050 |"


def test_site_mode_resumes_only_a_bundle_trained_with_the_same_config(tmp_path):
    from triage.train.config import TrainConfig

    config = TrainConfig.from_yaml(TRAIN_CONFIG).replace(runtime={"seed": 1})
    assert trained_bundle(tmp_path, config) is None
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(
        {"train_config": config.to_dict()}))
    assert trained_bundle(tmp_path, config) == tmp_path / "bundle"
    assert trained_bundle(tmp_path, config.replace(runtime={"seed": 2})) is None


def test_section_names_the_command():
    text = report.section("T", "python -m x", "today", ["a note"], "| t |")
    assert text.splitlines() == ["## T", "", "`python -m x`, today.", "", "a note", "",
                                 "| t |"]


def test_shifts_stay_in_the_window_and_change_the_volume():
    x = np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 4)).astype(np.float32)
    rng = np.random.default_rng(1)
    assert np.array_equal(shift_volume(x, "clean", (-200, 300), rng), x)
    for shift in ("noise", "gain_offset", "blur"):
        out = shift_volume(x, shift, (-200, 300), rng)
        assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
        assert not np.allclose(out, x)
    # gain about 0 HU and +25 HU: 0 HU (x = 0.4) moves by 25 / 500
    point = np.full((1, 1, 1), 0.4, np.float32)
    assert float(shift_volume(point, "gain_offset", (-200, 300), rng)[0, 0, 0]) == \
        np.float32(0.45)


def test_site_manifest_labels_whole_patients_of_the_new_device(tmp_path):
    frame = pd.DataFrame({
        "study_uid": [f"1.{i}" for i in range(40)],
        "patient_key": [f"pat{i // 2:03d}" for i in range(40)],
        "label": [str((i // 2) % 2) for i in range(40)],
        "device_group": ["new" if i < 30 else "old" for i in range(40)],
        "split": ["train"] * 40})
    frame.to_csv(tmp_path / "m.csv", index=False)
    out = pd.read_csv(site_manifest(tmp_path / "m.csv", "new", 10, 0, tmp_path / "o.csv"),
                      dtype=str)
    assert set(out["device_group"]) == {"new"} and len(out) == 30
    train = out[out["split"] == "train"]
    labelled = out[out["split"].isin(["train", "calib"])]
    assert len(labelled) == 12  # 3 patients of 2 studies per class (>= 5 each)
    assert set(train["label"]) == {"0", "1"}
    assert set(out.loc[out["split"] == "calib", "label"]) == {"0", "1"}
    assert not set(train["patient_key"]) & set(out.loc[out["split"] == "test", "patient_key"])


def test_lodo_verdict_judges_each_fold_against_in_domain_and_the_baseline_spread():
    def rows_for(device, base, full, in_domain=0.99):
        return [{"variant": v, "device": device, "seed": s, "in_domain_auroc": in_domain,
                 "clean.auroc": x + 0.01 * s}
                for v, x in (("baseline", base), ("full", full)) for s in (0, 1, 2)]

    rows = rows_for("acme", 0.90, 0.97) + rows_for("cygnus", 0.93, 0.935)
    lines = report.lodo_verdict(rows, ["acme", "cygnus"], "full")
    assert len(lines) == 3
    assert "gap 0.010, target <= 0.03: met" in lines[0]
    assert "+0.070, seed spread 0.010 (met)" in lines[0]
    # cygnus: 0.945 held out vs 0.99 in-domain, and +0.005 is inside the 0.010 spread
    assert "gap 0.045, target <= 0.03: missed" in lines[1]
    assert "+0.005, seed spread 0.010 (missed)" in lines[1]
    assert lines[2] == "- Worst fold: `cygnus`, full held-out AUROC 0.945."
    one_seed = [r for r in rows if r["seed"] == 0]
    assert "(not judged (one seed))" in report.lodo_verdict(one_seed, ["acme"], "full")[0]


def test_lodo_compares_the_full_method_with_the_baseline():
    assert {"loss", "perturb", "layered", "consistency", "finetune"} <= set(VARIANTS["full"])
    assert VARIANTS["full"]["perturb"] == {"enabled": True}


def test_table1_reads_the_large_test_export_columns():
    row = {"variant": "baseline", "seed": 0, "accuracy": 0.5,
           "pool_in_domain_accuracy": 0.9, "pool_held_out_auroc": 0.8}
    text = report.table1([row], ["baseline"], report.TABLE1_POOL_COLUMNS).splitlines()
    assert text[2].startswith("| baseline | 1 | 0.900 | – | – | – | – | 0.800 |")


def test_relative_gains_put_the_seed_study_gains_beside_ours():
    """Gains relative to the baseline's mean over seeds, ours on the chosen columns (the
    large test export's here) and the seed study's where it reports the strategy."""
    rows = [{"variant": "baseline", "seed": s, "pool_in_domain_accuracy": a,
             "pool_held_out_accuracy": 0.5, "pool_held_out_auroc": 0.8}
            for s, a in ((0, 0.7), (1, 0.9))]
    rows += [{"variant": "combined", "seed": 0, "pool_in_domain_accuracy": 0.88,
              "pool_held_out_accuracy": 0.6, "pool_held_out_auroc": 0.72},
             {"variant": "layered", "seed": 0, "pool_in_domain_accuracy": 0.8}]
    text = report.relative_gains(rows, ["baseline", "layered", "combined"],
                                 report.TABLE1_POOL_COLUMNS).splitlines()
    assert text[0] == ("| strategy | accuracy | seed study accuracy | cross-domain acc | "
                       "seed study cross-domain acc | held-out AUROC |")
    assert len(text) == 4  # the baseline has no row of its own
    assert text[2] == "| layered | +0.0 % | ? | – | ? | – |"
    # 0.88 / 0.8, 0.867 / 0.812, 0.6 / 0.5, 0.781 / 0.701, 0.72 / 0.8
    assert text[3] == "| combined | +10.0 % | +6.8 % | +20.0 % | +11.4 % | -10.0 % |"
    assert report._relative(0.79999, 0.8) == "+0.0 %"  # rounded to zero: no "-0.0 %"


def test_summary_run_logs_the_mean_over_seeds_of_each_figure(tmp_path, monkeypatch):
    import mlflow

    from benchmarks.strategies.run import log_to_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    rows = [{"arm": "from scratch", "n_labelled": 50, "seed": s, "auroc": 0.9 + 0.02 * s,
             "ece": math.nan} for s in (0, 1)]
    rows += [{"variant": "full", "device": "acme", "seed": 0, "clean.auroc": 0.95}]
    log_to_mlflow("site", "## table", rows)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("strategies-site")
                                 .experiment_id])
    assert run.data.tags["triage.kind"] == "strategies-site-summary"
    assert run.data.metrics == {"from_scratch.n50.auroc": pytest.approx(0.91),
                                "acme.full.clean.auroc": 0.95}
