"""The valid calibration sample and the refit, without a model: runs routed by the real
rules, decisions imported into a real store (the fast variant of `test_loop.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.feedback.conftest import MODEL, write_reviewed
from triage.feedback.importer import import_reviews
from triage.feedback.recalibrate import (
    carry_over,
    choose_sample,
    logits_from_labels,
    refit,
    spent_labels,
)
from triage.feedback.store import LabelStore
from triage.route import ThresholdConfig, load_rules
from triage.route.audit import in_sample
from triage.route.fit import SHIFT_REFUSED
from triage.route.rules import RuleSet
from triage.route.thresholds import FittedThresholds, GroupThresholds

from .conftest import DEFAULT_RULES


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(DEFAULT_RULES)


@pytest.fixture
def reviewed_run(make_run, tmp_path) -> Path:
    """A label store holding every decision of a 3,000-study run audited at F = 0.5 (two
    devices); the run reports p = sigmoid(d / 1), the findings follow sigmoid(d / 2)."""
    run = make_run(n=3000, fraction=0.5, seed=2, temperature=1.0, true_temperature=2.0)
    store = tmp_path / "labels.sqlite"
    import_reviews(write_reviewed(tmp_path / "r.csv", run.out / "review_worklist.csv",
                                  run.truth), run.out, store)
    return store


def _frame(rows) -> list:
    """Studies that reached the score rules (scored, no QC or failure rule fired)."""
    score = ("uncertified-device", "urgent", "routine", "low-confidence")
    return [r for r in rows if r.p_calibrated and all(
        i in score or i == "audit" for i in r.rule_ids.split("; "))]


def _choose(store, ruleset, versions=("1",)):
    with LabelStore(store) as db:
        return choose_sample(db, name=MODEL, versions=set(versions), ruleset=ruleset)


def test_the_sample_is_every_scored_study_with_a_draw_below_f(make_run, tmp_path, ruleset):
    run = make_run(n=1500, fraction=0.3, seed=11)
    store = tmp_path / "labels.sqlite"
    reviewed = write_reviewed(tmp_path / "r.csv", run.out / "review_worklist.csv", run.truth)
    result = import_reviews(reviewed, run.out, store)
    assert result.audit > 0 and result.sampled > result.audit
    sample = _choose(store, ruleset)
    frame = _frame(run.rows)
    expected = {r.study_uid for r in frame if in_sample(r.study_uid, 0.3, 11)}
    assert {lb.study_uid for lb in sample.labels} == expected
    assert sample.incomplete_runs == 0 and sample.missing == 0
    assert sample.skipped["not sampled"] > 0 and sample.skipped["not scored past QC"] > 0
    # unbiased: the sample looks like the frame; the studies reviewed anyway do not (no
    # confident score among them, and another prevalence)
    def stats(uids) -> tuple[float, float]:
        p = np.array([float(by_uid[u].p_calibrated) for u in uids])
        return float(np.mean([run.truth[u] for u in uids])), float(np.mean(p < 0.2))

    by_uid = {r.study_uid: r for r in run.rows}
    frame_stats = stats([r.study_uid for r in frame])
    sample_stats = stats([lb.study_uid for lb in sample.labels])
    review_stats = stats([r.study_uid for r in frame if r.route == "review"
                          and not r.rule_ids.startswith("audit")])
    assert np.allclose(sample_stats, frame_stats, atol=0.06)
    assert review_stats[1] == 0 < frame_stats[1] - 0.2


def test_without_audit_review_labels_are_no_calibration_sample(make_run, tmp_path, ruleset):
    run = make_run(n=300, fraction=0.0)
    store = tmp_path / "labels.sqlite"
    import_reviews(write_reviewed(tmp_path / "r.csv", run.out / "review_worklist.csv",
                                  run.truth), run.out, store)
    sample = _choose(store, ruleset)
    assert sample.labels == [] and sample.skipped["not sampled"] > 0


def test_a_run_with_an_unlabelled_sampled_study_waits(make_run, tmp_path, ruleset):
    run = make_run(n=400, fraction=0.2, seed=1)
    sampled = [r.study_uid for r in _frame(run.rows) if in_sample(r.study_uid, 0.2, 1)]
    store = tmp_path / "labels.sqlite"
    import_reviews(write_reviewed(tmp_path / "r.csv", run.out / "review_worklist.csv",
                                  run.truth, skip=frozenset(sampled[:1])), run.out, store)
    sample = _choose(store, ruleset)
    assert (len(sample.labels), sample.incomplete_runs, sample.missing) == (0, 1, 1)
    assert sample.skipped["incomplete run"] == len(sampled) - 1
    # the reader's decision arrives: the run is complete
    import_reviews(write_reviewed(tmp_path / "r2.csv", run.out / "review_worklist.csv",
                                  run.truth), run.out, store)
    assert len(_choose(store, ruleset).labels) == len(sampled)


def test_refit_recovers_the_temperature_and_consumed_labels_are_not_reused(
        reviewed_run, ruleset):
    store = reviewed_run
    sample = _choose(store, ruleset)
    assert len(sample.labels) > 1000
    d = logits_from_labels(sample.labels)[:, 1]
    assert np.allclose(d[np.abs(d) < 9], np.array(
        [np.log(lb.p_calibrated / (1 - lb.p_calibrated)) for lb in sample.labels])[
        np.abs(d) < 9])
    lax = ThresholdConfig(alpha=0.05, delta=0.1, min_negatives=50, min_urgent_count=50)
    temperature, fitted = refit(sample.labels, lax)
    assert 1.7 < temperature < 2.3
    assert set(fitted.groups) == {"acme", "borealis"}
    assert all(g.certified for g in fitted.groups.values())
    with LabelStore(store) as db:
        db.consume(sample.labels, "2", "2025-04-01T00:00:00+00:00")
    again = _choose(store, ruleset, versions=("1", "2"))
    assert again.labels == [] and again.skipped["already used"] == len(sample.labels)


def test_an_uncertified_device_keeps_its_labels_until_its_routine_threshold_certifies(
        reviewed_run, ruleset):
    store = reviewed_run
    labels = _choose(store, ruleset).labels
    acme = [lb for lb in labels if lb.device_group == "acme"]
    borealis = [lb for lb in labels if lb.device_group == "borealis"]
    # min_positives_needed(0.05, 0.1) = 45: 40 borealis labels cannot certify its routine
    lax = ThresholdConfig(alpha=0.05, delta=0.1, min_negatives=50, min_urgent_count=50)
    _, fitted = refit(acme + borealis[:40], lax)
    assert fitted.groups["acme"].t_low is not None
    assert fitted.groups["borealis"].t_low is None
    spent = spent_labels(acme + borealis[:40], fitted)
    assert spent == acme
    with LabelStore(store) as db:
        db.consume(spent, "2", "2025-04-01T00:00:00+00:00")
    # the next recalibration gets every borealis label, the 40 it saw included
    again = _choose(store, ruleset, versions=("1", "2"))
    assert again.labels == borealis and again.skipped["already used"] == len(acme)
    _, fitted = refit(again.labels, lax)
    assert fitted.groups["borealis"].t_low is not None
    assert spent_labels(again.labels, fitted) == borealis


def test_a_device_the_new_labels_cannot_certify_keeps_the_parents_rule_on_the_logit(
        reviewed_run, ruleset):
    store = reviewed_run
    labels = _choose(store, ruleset).labels
    lax = ThresholdConfig(alpha=0.05, delta=0.1, min_negatives=50, min_urgent_count=50,
                          ppv_target=0.7)
    t_parent, parent = refit(labels, lax)
    assert all(g.t_low is not None and g.t_high is not None for g in parent.groups.values())
    # a week later: a few acme labels only, another temperature
    week = [lb for lb in labels if lb.device_group == "acme"][:30]
    t_new, fitted = refit(week, lax)
    assert fitted.groups["acme"].t_low is None and "borealis" not in fitted.groups
    assert spent_labels(week, fitted) == []
    kept = carry_over(fitted, parent.to_dict(), parent="4", scale=t_parent / t_new)
    d = np.linspace(-12, 12, 4001)  # the network's logit difference
    for name in ("acme", "borealis"):
        old, new = parent.groups[name], kept.groups[name]
        assert (new.low_carried_from, new.high_carried_from) == ("4", "4")
        assert (new.miss_bound, new.low_guarantee) == (old.miss_bound, old.low_guarantee)
        p_old, p_new = 1 / (1 + np.exp(-d / t_parent)), 1 / (1 + np.exp(-d / t_new))
        # the same studies routine and urgent as under the parent (grid points at the
        # boundary itself aside: float rounding)
        assert np.sum((p_old < old.t_low) != (p_new < new.t_low)) <= 1
        assert np.sum((p_old >= old.t_high) != (p_new >= new.t_high)) <= 1
    # a carried threshold is carried on with the version that certified it
    again = carry_over(refit(week, lax)[1], kept.to_dict(), parent="5", scale=1.0)
    assert again.groups["borealis"].low_carried_from == "4"
    # and never consumes labels
    assert spent_labels(week, kept) == []


def test_a_threshold_is_carried_for_lack_of_data_never_against_evidence():
    cfg = ThresholdConfig(guarantee="marginal", stratify="auto")
    pooled = "marginal/pooled a=0.01"
    parent = FittedThresholds(cfg, {
        "lent": GroupThresholds("lent", 40, 400, t_low=0.03, low_guarantee=pooled),
        "own": GroupThresholds("own", 150, 900, t_low=0.02,
                               low_guarantee="marginal/device a=0.01")}).to_dict()
    refused = f"its positives score lower than the other devices' (p=0.001), {SHIFT_REFUSED}"
    week = FittedThresholds(cfg, {"lent": GroupThresholds("lent", 9, 80, low_check=refused),
                                  "own": GroupThresholds("own", 8, 70, low_check=refused)})
    kept = carry_over(week, parent, parent="1", scale=1.0).groups
    # the new shift check refuses the pooled threshold the parent lent: not carried
    assert kept["lent"].t_low is None
    # it says nothing of the device's own threshold: carried
    assert kept["own"].t_low == pytest.approx(0.02) and kept["own"].low_carried_from == "1"
    # enough positives of its own and still no threshold: evidence, not carried
    enough = FittedThresholds(cfg, {"own": GroupThresholds("own", 150, 900)})
    assert carry_over(enough, parent, parent="1", scale=1.0).groups["own"].t_low is None


def test_a_carried_threshold_the_fresh_labels_refute_is_dropped():
    """The parent certified acme's routine threshold at p < 0.05; of the week's 50 audited
    positives, 10 score 0.01: a miss rate whose 95 % lower bound is 0.11, against
    alpha = 0.01. It was carried all the same (too few positives to certify anew)."""
    cfg = ThresholdConfig()
    parent = FittedThresholds(cfg, {"acme": GroupThresholds(
        "acme", 400, 3000, t_low=0.05, low_guarantee="pac/device a=0.01 d=0.05")}).to_dict()
    week = FittedThresholds(cfg, {"acme": GroupThresholds("acme", 50, 200)})
    y = np.array([1] * 50 + [0] * 200)
    missed = np.array([0.01] * 10 + [0.7] * 40 + [0.2] * 200)
    assert carry_over(week, parent, parent="1", scale=1.0,
                      fresh={"acme": (missed, y)}).groups["acme"].t_low is None
    caught = np.array([0.7] * 50 + [0.2] * 200)  # no fresh positive under it: carried
    kept = carry_over(week, parent, parent="1", scale=1.0, fresh={"acme": (caught, y)})
    assert kept.groups["acme"].t_low == pytest.approx(0.05)


def test_a_run_with_a_conflicting_sampled_study_waits_as_an_unlabelled_one(make_run,
                                                                           tmp_path, ruleset):
    """Dropping only the study readers disagree on (often a hard, low-score positive)
    would take misses out of the calibration sample."""
    from triage.feedback.sample import select_sample

    run = make_run(n=400, fraction=0.2, seed=1)
    sampled = [r.study_uid for r in _frame(run.rows) if in_sample(r.study_uid, 0.2, 1)]
    store = tmp_path / "labels.sqlite"
    import_reviews(write_reviewed(tmp_path / "r.csv", run.out / "review_worklist.csv",
                                  run.truth), run.out, store)
    with LabelStore(store) as opened:
        labels, studies = opened.labels(), opened.sample()
    stages = {r.id: r.stage for r in ruleset.rules}
    key = (sampled[0], MODEL, labels[0].model_version)
    sample = select_sample(labels, studies, model_name=MODEL,
                           versions={labels[0].model_version},
                           rules_version=ruleset.full_version, stages=stages,
                           conflicts={key})
    assert (len(sample.labels), sample.incomplete_runs) == (0, 1)
    assert sample.skipped["incomplete run"] == len(sampled)
