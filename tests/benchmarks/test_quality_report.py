"""The quality benchmark's table and target verdicts, from known per-run results."""

from __future__ import annotations

from benchmarks.quality.run import table, verdicts


def _result(variant: str, seed: int, in_auroc: float, held_auroc: float, in_acc: float,
            held_acc: float) -> dict:
    row = {"in_domain_auroc": in_auroc, "held_out_auroc": held_auroc,
           "in_domain_accuracy": in_acc, "held_out_accuracy": held_acc,
           "in_domain_macro_f1": in_acc, "in_domain_nll": 0.5, "in_domain_ece": 0.05,
           "held_out_ece": 0.1, "auroc_gap": in_auroc - held_auroc,
           "accuracy_gap": in_acc - held_acc}
    return {"variant": variant, "seed": seed, "holdout": "cygnus",
            "rows": {"False": row, "True": dict(row, in_domain_ece=0.02)}}


RESULTS = [
    _result("baseline", 0, 0.90, 0.70, 0.85, 0.70),
    _result("baseline", 1, 0.92, 0.74, 0.86, 0.72),
    _result("focal", 0, 0.91, 0.75, 0.85, 0.74),
    _result("focal+dp", 0, 0.91, 0.89, 0.86, 0.84),
    _result("focal+dp", 1, 0.93, 0.91, 0.87, 0.85),
]


def test_table_shows_mean_and_sd_per_configuration_with_the_calibrated_row():
    text = table(RESULTS, "cygnus")
    lines = text.splitlines()
    assert lines[0].startswith("| configuration | in-domain accuracy")
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    assert "0.910 ± 0.014" in baseline  # in-domain AUROC over two seeds
    assert "0.720 ± 0.028" in baseline  # held-out AUROC
    assert any(line.startswith("| focal+dp+T |") for line in lines)
    focal = next(line for line in lines if line.startswith("| focal |"))
    assert "0.750" in focal and "±" not in focal.split("|")[8]  # one seed: no sd


def test_verdicts_state_each_target_met_or_missed():
    text = "\n".join(verdicts(RESULTS, "cygnus"))
    assert "Baseline loses 14.5 points" in text and "met" in text
    assert "within 2.0 points" in text
    assert "gain over the baseline +0.180" in text
    worse = [_result("baseline", s, 0.9, 0.9, 0.86, 0.85) for s in (0, 1)]
    worse += [_result("focal+dp", s, 0.9, 0.8, 0.86, 0.80) for s in (0, 1)]
    text = "\n".join(verdicts(worse, "cygnus"))
    assert text.count("**missed**") == 3


def test_the_summary_is_logged_to_a_real_mlflow_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from benchmarks.quality.run import log_to_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    log_to_mlflow("| table |", RESULTS)
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("quality-benchmark").experiment_id])
    assert run.data.tags["triage.kind"] == "quality-benchmark-summary"
    # Mean over seeds, per variant and held-out device; the calibrated row separately.
    assert abs(run.data.metrics["cygnus.baseline.held_out_auroc"] - 0.72) < 1e-9
    assert abs(run.data.metrics["cygnus.focal_plus_dp_plus_T.in_domain_ece"] - 0.02) < 1e-9
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"quality_benchmark.md", "quality_results.json"} <= names


def test_the_large_test_export_rows_are_tabled_and_judged_on_their_own():
    """``pool_rows`` (scores on the large test export) feed their own table and verdicts;
    runs without them are left out there and still count in the small-set table."""
    pooled = [dict(r, pool_rows=_result(r["variant"], r["seed"], 0.99, 0.98, 0.97, 0.90)
                   ["rows"]) for r in RESULTS[:4]]
    results = pooled + RESULTS[4:]
    big = table(results, "cygnus", "pool_rows")
    baseline = next(line for line in big.splitlines() if line.startswith("| baseline |"))
    assert "0.990 ± 0.000" in baseline and "0.910" not in baseline
    dp = next(line for line in big.splitlines() if line.startswith("| focal+dp |"))
    assert "±" not in dp  # one of the two focal+dp runs has pool rows
    text = "\n".join(verdicts(results, "cygnus", "pool_rows"))
    assert "Baseline loses 7.0 points" in text and "within 1.0 points" in text
    assert "0.910 ± 0.014" in table(results, "cygnus")  # the run's own sets, unchanged
