"""Registration, gated promotion, rollback and the audit trail on a real SQLite-backed MLflow
registry, with models trained by `train_model` on the factory's cached volumes."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest

from triage.registry.gates import GateConfig, certified_alpha, gate_report, report_markdown

TINY = {"model": {"name": "cnn-small", "options": {"channels": [4, 8]}},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 0.003},
        "runtime": {"experiment": "promotion-test"}}


def _metrics(auroc: float, ece: float, devices: dict[str, float] | None = None,
             n: int = 40) -> pd.DataFrame:
    rows = [{"calibrated": True, "group": "all", "auroc": auroc, "ece": ece, "n": n}]
    rows += [{"calibrated": True, "group": g, "auroc": a, "ece": ece, "n": n}
             for g, a in (devices or {}).items()]
    return pd.DataFrame(rows)


def test_first_version_faces_only_the_absolute_gates():
    report = gate_report(_metrics(0.8, 0.04), None, GateConfig(), miss_rate=0.0)
    assert report["gate"].tolist() == ["calibration", "routing guarantee"]
    assert report["passed"].all()
    report = gate_report(_metrics(0.8, 0.2), None, GateConfig(), miss_rate=0.02)
    assert not report["passed"].any()


def test_the_miss_rate_bound_is_the_alpha_the_challenger_certified_under():
    """One home for the routing α: the rules' thresholds.alpha, not a second gate setting."""
    good = _metrics(0.8, 0.04)

    def bound(config: GateConfig, **kwargs) -> float:
        report = gate_report(good, None, config, miss_rate=0.05, **kwargs)
        return float(report.loc[report["gate"] == "routing guarantee", "bound"].iloc[0])

    assert GateConfig().max_miss_rate is None
    assert GateConfig.from_yaml().max_miss_rate is None  # the shipped gates set no α
    assert bound(GateConfig(), alpha=0.1) == 0.1
    assert bound(GateConfig()) == 0.01  # ThresholdConfig's default
    assert bound(GateConfig(max_miss_rate=0.02), alpha=0.1) == 0.02  # a stricter override
    assert gate_report(good, None, GateConfig(), miss_rate=0.05, alpha=0.1)["passed"].all()


def test_the_routing_gate_refuses_only_a_miss_rate_the_promotion_set_shows_above_alpha():
    """2 misses of 12 positives (0.17) do not show a miss rate above 0.1 at 95 %
    confidence (the lower bound is 0.03); 20 of 100 do (lower bound 0.14)."""
    good = _metrics(0.8, 0.04)

    def passed(misses: int, positives: int) -> bool:
        report = gate_report(good, None, GateConfig(), miss_rate=misses / positives,
                             miss_counts=(misses, positives), alpha=0.1, delta=0.05)
        row = report[report["gate"] == "routing guarantee"].iloc[0]
        assert f"{misses} of {positives} positives" in row["metric"]
        return bool(row["passed"])

    assert passed(2, 12) and passed(0, 12) and passed(12, 120)
    assert not passed(20, 100) and not passed(9, 12)
    # without the counts the point estimate is compared, as before
    assert not gate_report(good, None, GateConfig(), miss_rate=2 / 12, alpha=0.1)["passed"].all()


def test_certified_alpha_reads_the_bundle_rules_then_its_routing():
    from types import SimpleNamespace

    import yaml

    from triage.configs import config_path
    from triage.route.thresholds import FittedThresholds, ThresholdConfig

    demo = yaml.safe_load(config_path("rules", "demo").read_text(encoding="utf-8"))
    assert certified_alpha(SimpleNamespace(rules=demo, routing={})) == 0.1
    routing = FittedThresholds(ThresholdConfig(alpha=0.05)).to_dict()
    assert certified_alpha(SimpleNamespace(rules={}, routing=routing)) == 0.05
    assert certified_alpha(SimpleNamespace(rules={}, routing={})) == ThresholdConfig().alpha


def test_nothing_certified_fails_and_a_device_the_champion_certified_must_stay_certified():
    good = _metrics(0.8, 0.04)
    report = gate_report(good, None, GateConfig(), miss_rate=0.0, certified=set())
    row = report[report["metric"] == "nothing certified"]
    assert row["gate"].item() == "routing guarantee" and not row["passed"].item()
    allowed = gate_report(good, None, GateConfig(require_certified=False), miss_rate=0.0,
                          certified=set())
    assert allowed["passed"].all() and "nothing certified" in set(allowed["metric"])
    lost = gate_report(good, good, GateConfig(), miss_rate=0.0, certified={"acme"},
                       champion_certified={"acme", "borealis"})
    failed = lost[~lost["passed"]]
    assert list(zip(failed["gate"], failed["metric"], failed["group"], strict=True)) == [
        ("routing guarantee", "certified", "borealis")]
    kept = gate_report(good, good, GateConfig(), miss_rate=0.0,
                       certified={"acme", "borealis", "cygnus"},
                       champion_certified={"acme", "borealis"})
    assert kept["passed"].all()


def test_certified_groups_reads_a_routing_record():
    from triage.registry.gates import certified_groups
    from triage.route import FittedThresholds, GroupThresholds, ThresholdConfig

    routing = FittedThresholds(ThresholdConfig(), {
        "acme": GroupThresholds("acme", 400, 400, t_low=0.02),
        "borealis": GroupThresholds("borealis", 10, 10, low_reason="few")}).to_dict()
    assert certified_groups(routing) == {"acme"}
    assert certified_groups({}) == set()


def test_auroc_and_device_regressions_fail_within_tolerance_pass():
    config = GateConfig(auroc_tolerance=0.02, device_auroc_tolerance=0.05)
    champion = _metrics(0.90, 0.03, {"acme": 0.9, "cygnus": 0.85})
    ok = gate_report(_metrics(0.885, 0.03, {"acme": 0.86, "cygnus": 0.85}), champion, config,
                     miss_rate=0.0)
    assert ok["passed"].all()
    worse = gate_report(_metrics(0.87, 0.03, {"acme": 0.9, "cygnus": 0.79}), champion, config,
                        miss_rate=0.0)
    failed = worse[~worse["passed"]]
    assert set(zip(failed["gate"], failed["group"], strict=True)) == {
        ("no AUROC regression", "all"), ("no device regression", "cygnus")}
    assert math.isclose(failed.iloc[0]["bound"], 0.88)
    text = report_markdown(worse)
    assert "| no device regression | auroc | cygnus | 0.850 | 0.790 | 0.800 | FAIL |" in text


def test_small_or_single_class_device_groups_are_not_gated():
    champion = _metrics(0.9, 0.03, {"tiny": 0.9})
    challenger = _metrics(0.9, 0.03, {"tiny": 0.1}, n=40)
    challenger.loc[challenger["group"] == "tiny", "n"] = 5
    report = gate_report(challenger, champion, GateConfig(), miss_rate=0.0)
    assert "tiny" not in set(report["group"])


def _inverted(bundle):
    """The same network with its two output logits swapped and made overconfident: a
    challenger that is wrong wherever the original is right."""
    import dataclasses

    state = dict(bundle.state_dict)
    head = [k for k, v in state.items() if v.ndim >= 1 and v.shape[0] == 2][-2:]
    for key in head:
        state[key] = state[key].flip(0).clone()
    return dataclasses.replace(bundle, state_dict=state).with_temperature(0.05)


@pytest.fixture(scope="module")
def registry(tiny_training_set, tmp_path_factory):
    """A trained run (v1 source) and an inverted, overconfident copy of its model (a worse
    challenger) in one SQLite store, with both models' ECE on the promotion set."""
    from triage.registry.bundle import load_bundle, save_bundle
    from triage.registry.pyfunc import log_bundle
    from triage.registry.tracking import start_run
    from triage.train.config import TrainConfig
    from triage.train.run import train_model

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        good = train_model(manifest_path=tiny_training_set.manifest_path,
                           ingest_dir=tiny_training_set.ingest_dir,
                           config=TrainConfig.from_dict(TINY), out_dir=root / "good",
                           progress=False)
        bad = _inverted(load_bundle(good.bundle_dir))
        bad_dir = save_bundle(bad, root / "bad_bundle")
        with start_run("promotion-test", run_name="overconfident", uri=uri) as run:
            log_bundle(bad_dir)
            bad_run = run.run_id
    from triage.data.dataset import resolve_samples
    from triage.data.manifest import read_manifest
    from triage.registry.evaluate import evaluate_bundle

    samples = resolve_samples(read_manifest(tiny_training_set.manifest_path),
                              tiny_training_set.ingest_dir).samples
    ece = {}
    for name, bundle in (("good", load_bundle(good.bundle_dir)), ("bad", bad)):
        metrics, _ = evaluate_bundle(bundle, samples, tiny_training_set.ingest_dir)
        ece[name] = metrics.loc[metrics["calibrated"] & (metrics["group"] == "all"),
                                "ece"].item()
    assert ece["bad"] > ece["good"] + 0.05, ece
    return {"uri": uri, "good": good.run_id, "bad": bad_run, "set": tiny_training_set,
            "max_ece": (ece["good"] + ece["bad"]) / 2}


def test_register_promote_refuse_promote_rollback_with_audit_trail(registry, monkeypatch):
    from triage.registry.promotion import (
        CHAMPION,
        PREVIOUS,
        alias_version,
        audit_trail,
        promote,
        register_version,
        rollback,
    )

    uri, data = registry["uri"], registry["set"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # the tiny models certify no device (too few calibration positives): judge them on the
    # other gates here; test_nothing_certified_... covers the certification rows
    gates = GateConfig(max_ece=registry["max_ece"], require_certified=False)
    kwargs = {"manifest_path": data.manifest_path, "ingest_dir": data.ingest_dir,
              "gates": gates}

    v1 = register_version(registry["good"], "tumour")
    assert v1 == "1"
    client = mlflow.MlflowClient(uri)
    tags = client.get_model_version("tumour", v1).tags
    assert tags["train_devices"] == "acme,borealis,cygnus,ember"
    assert len(tags["manifest.sha256"]) == 64
    assert float(tags["calibration.temperature"]) > 0
    model_id = client.get_model_version("tumour", v1).source.removeprefix("models:/")
    assert tags["bundle.sha256"] == client.get_logged_model(model_id).tags[
        "triage.bundle_sha256"] and len(tags["bundle.sha256"]) == 64

    dry = promote("tumour", v1, dry_run=True, **kwargs)
    assert dry.passed and not dry.promoted
    assert alias_version("tumour", CHAMPION) is None

    first = promote("tumour", v1, **kwargs)
    assert first.promoted and first.champion is None
    assert alias_version("tumour", CHAMPION) == "1"

    worse = register_version(registry["bad"], "tumour")
    refused = promote("tumour", worse, **kwargs)
    assert not refused.passed and not refused.promoted
    assert refused.report.loc[refused.report["gate"] == "calibration", "passed"].item() is False
    assert alias_version("tumour", CHAMPION) == "1"  # nothing changed
    assert client.get_model_version("tumour", worse).tags["gate.verdict"] == "fail"

    same = register_version(registry["good"], "tumour")  # as good as the champion
    better = promote("tumour", same, **kwargs)
    assert better.promoted and better.champion == "1"
    assert "no AUROC regression" in set(better.report["gate"])
    assert (alias_version("tumour", CHAMPION), alias_version("tumour", PREVIOUS)) == (same, "1")

    assert rollback("tumour") == (same, "1")
    assert (alias_version("tumour", CHAMPION), alias_version("tumour", PREVIOUS)) == ("1", same)

    trail = audit_trail("tumour")
    assert [(e["action"], e["to"], e["from"]) for e in trail] == [
        ("promote", "1", ""), ("promote", same, "1"), ("rollback", "1", same)]
    assert trail[1]["report"].startswith("runs:/")
    assert "rollback: @champion -> v1" in client.get_registered_model("tumour").description


def test_cli_promote_exit_codes(registry, monkeypatch, capsys):
    from triage.cli import main

    uri, data = registry["uri"], registry["set"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["register", "--run-id", registry["bad"], "--name", "cli-model"]) == 0
    gates_file = data.ingest_dir.parent / "gates.yaml"
    gates_file.write_text(f"max_ece: {registry['max_ece']:.4f}\n")
    args = ["promote", "--name", "cli-model", "--model-version", "1", "--manifest",
            str(data.manifest_path), "--ingest", str(data.ingest_dir), "--gates", str(gates_file)]
    assert main(args + ["--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "| calibration | ece | all |" in out and "refused" in out
    assert main(["rollback", "--name", "cli-model"]) == 2  # no @previous: clear error
    assert main(["promote", "--name", "cli-model", "--model-version", "9", "--manifest",
                 str(data.manifest_path), "--ingest", str(data.ingest_dir)]) == 2
