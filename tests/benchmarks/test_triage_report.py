"""The triage benchmark's redraw logic and report, on simulated scores with known truth.

Scores: raw logit margins d ~ N(+mu, sigma) for positives and N(-mu, sigma) for
negatives, multiplied by 2 so the raw probabilities are over-confident (temperature ~2).
The true miss rate of a routine threshold t (a calibrated probability, temperature T) is
then Phi((T * logit(t) - 2 mu) / (2 sigma)), which the guarantee test checks directly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binom, norm

from benchmarks.triage.redraw import (
    ALL,
    Pool,
    evaluate_draw,
    exceed_allowance,
    exceed_by_ranks,
    pool_routine,
    qc_flagged,
    route_studies,
    routing_figures,
    run_draws,
    split_draw,
    summarize,
)
from benchmarks.triage.report import routing_table, verdicts
from triage.calibrate import probabilities
from triage.route import Router, fit_thresholds, load_rules
from triage.route.rules import RuleSet

MU, SIGMA = 2.5, 1.5
RULES = "triage/configs/rules/default.yaml"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    from benchmarks.triage.run import RULES as path

    return load_rules(path)


def simulated_pool(n_big: int = 900, n_small: int = 100, seed: int = 0) -> Pool:
    """Device `big` can certify (~315 calibration positives at 70 %), `small` cannot."""
    rng = np.random.default_rng(seed)
    n = n_big + n_small
    y = (rng.uniform(size=n) < 0.5).astype(int)
    groups = np.array(["big"] * n_big + ["small"] * n_small)
    d = 2 * np.where(y == 1, rng.normal(MU, SIGMA, n), rng.normal(-MU, SIGMA, n))
    return Pool.simple(np.stack([np.zeros(n), d], axis=1), y, groups)


def test_split_is_stratified_by_group_and_label_and_seeded():
    pool = simulated_pool()
    a = split_draw(pool.group, pool.label, 0.7, np.random.default_rng([0, 1]))
    b = split_draw(pool.group, pool.label, 0.7, np.random.default_rng([0, 1]))
    c = split_draw(pool.group, pool.label, 0.7, np.random.default_rng([0, 2]))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    for group in ("big", "small"):
        for label in (0, 1):
            stratum = (pool.group == group) & (pool.label == label)
            assert a[stratum].sum() == round(0.7 * stratum.sum())


def test_routing_figures_by_hand():
    routes = np.array(["routine", "routine", "urgent", "urgent", "review", "routine", "failed"])
    labels = np.array([0, 1, 1, 0, 1, 0, 0])
    f = routing_figures(routes, labels)
    assert f["cleared"] == pytest.approx(2 / 4)  # negatives 0, 3, 5, 6: two routine
    assert f["miss"] == pytest.approx(1 / 3)
    assert f["ppv_urgent"] == pytest.approx(1 / 2)
    assert f["review"] == pytest.approx(2 / 7)  # failed counts as review (review worklist)
    assert np.isnan(routing_figures(np.array(["review"]), np.array([1]))["ppv_urgent"])


def test_router_routes_match_the_score_rule_and_qc_forces_review(ruleset):
    pool = simulated_pool(n_small=0)
    tilted = pool.verdict.copy()
    tilted[:50] = "tilt"
    pool = Pool(pool.study_uid, pool.group, pool.label, pool.logits, tilted, pool.n_slices,
                pool.modality)
    qc = qc_flagged(pool, ruleset, ["big"])
    np.testing.assert_array_equal(qc, np.arange(pool.label.size) < 50)
    p = probabilities(pool.logits, 2.0)
    fitted = fit_thresholds(p[~qc], pool.label[~qc], pool.group[~qc], ruleset.thresholds)
    routes = route_studies(Router(ruleset, fitted, ["big"]), pool,
                           np.arange(pool.label.size), p)
    np.testing.assert_array_equal(routes == "routine", pool_routine(p, pool.group, qc, fitted))
    assert set(routes[:50]) == {"review"}


def test_miss_rate_guarantee_and_uncertified_device(ruleset):
    pool = simulated_pool()
    draws = run_draws(pool, 12, ruleset=ruleset, train_devices=["big", "small"])
    alpha = ruleset.thresholds.alpha
    true_exceed = 0
    for draw in draws:
        after = draw["stages"]["after"]
        assert draw["n_calib_pos"]["big"] >= 299 > draw["n_calib_pos"]["small"]
        assert after["big"]["certified"] == 1.0 and after["small"]["certified"] == 0.0
        # an uncertified device routes nothing routine: everything goes to review
        assert after["small"]["review"] == 1.0 and after["small"]["miss"] == 0.0
        true_miss = norm.cdf((draw["temperature"] * np.log(after["big"]["t_low"] / (
            1 - after["big"]["t_low"])) - 2 * MU) / (2 * SIGMA))
        true_exceed += true_miss > alpha
        # the routes barely change with calibration (monotone map, rank-based scans)
        assert draw["changed"] <= 0.02
    # P(true miss rate > alpha) <= delta per draw; 12 draws allow a few by chance
    assert true_exceed <= binom.ppf(0.999, len(draws), ruleset.thresholds.delta)
    summary = summarize(draws, alpha)
    assert summary["stages"]["after"]["small"]["cleared"]["mean"] == 0.0
    assert summary["stages"]["after"]["big"]["cleared"]["mean"] > 0.5


def _draw(miss: float, pool_miss: float, review: float = 0.1) -> dict:
    row = {"n": 300.0, "n_pos": 150.0, "cleared": 0.6, "miss": miss, "pool_miss": pool_miss,
           "ppv_urgent": 0.95, "review": review, "urgent": 0.4, "routine": 0.5,
           "certified": 1.0, "t_low": 0.05, "t_high": 0.8, "ece": 0.008,
           "adaptive_ece": 0.009, "nll": 0.1, "brier": 0.05}
    stage = {ALL: row, "acme-tomography-voxa-64": dict(row)}
    return {"draw": 0, "temperature": 1.5, "changed": 0.0, "n_calib_pos": {},
            "stages": {"before": stage, "after": stage}}


def test_exceedance_fraction_counts_only_rates_above_alpha():
    draws = [_draw(0.0, 0.0), _draw(0.01, 0.004), _draw(0.0134, 0.011), _draw(0.02, 0.002)]
    summary = summarize(draws, 0.01)
    entry = summary["stages"]["after"][ALL]
    assert entry["miss_exceed"] == pytest.approx(2 / 4)  # 0.01 itself does not exceed
    assert entry["pool_miss_exceed"] == pytest.approx(1 / 4)
    assert entry["miss"]["mean"] == pytest.approx(np.mean([0.0, 0.01, 0.0134, 0.02]))
    # noise allowance: a test part of 150 positives at a true rate 0.01 shows > 1.5 misses
    assert exceed_allowance(150, 0.01) == pytest.approx(1 - binom.cdf(1, 150, 0.01))


def test_exceedance_by_ranks_matches_the_certifier_on_any_scores(ruleset):
    """The negative-hypergeometric probability equals what `fit_thresholds` does to
    exchangeable calibration / test positives, whatever their score distribution."""
    cfg = ruleset.thresholds
    n_calib, n_test = 310, 150
    assert exceed_by_ranks(n_calib, n_test, cfg.alpha, cfg.delta) == pytest.approx(
        1 - (n_calib / (n_calib + n_test)) * (1 + n_test / (n_calib + n_test - 1)), abs=1e-9
    )  # k = 0: more than one of 150 test positives fall below every calibration one
    rng = np.random.default_rng(3)
    rounds, exceeded = 600, 0
    for _ in range(rounds):  # any continuous distribution; spread out against the grid
        scores = 1 / (1 + np.exp(-rng.uniform(-8, 8, n_calib + n_test)))
        calib, test = scores[:n_calib], scores[n_calib:]
        fitted = fit_thresholds(calib, np.ones(n_calib, int), np.array(["g"] * n_calib), cfg)
        t_low = fitted.get("g").t_low
        exceeded += np.mean(test < t_low) > cfg.alpha
    expected = exceed_by_ranks(n_calib, n_test, cfg.alpha, cfg.delta)
    # the candidate grid can only lower the threshold (here by ~15 %: a test positive
    # just below the lowest calibration one may sit above the grid point below it)
    assert exceeded / rounds <= expected + 3 * np.sqrt(expected * (1 - expected) / rounds)
    assert exceeded / rounds >= 0.6 * expected
    assert np.isnan(exceed_by_ranks(200, 100, cfg.alpha, cfg.delta))  # nothing certifies
    # at k = 1 (>= 474 calibration positives) the exact formula still matches a count
    n_calib, n_test = 608, 405
    ranks = np.array([rng.permutation(n_calib + n_test) < n_calib for _ in range(3000)])
    second = np.argsort(~ranks, axis=1, kind="stable")[:, 1]  # 2nd calibration position
    below = np.array([(~row[:i]).sum() for row, i in zip(ranks, second, strict=True)])
    simulated = np.mean(below / n_test > cfg.alpha)
    assert simulated == pytest.approx(exceed_by_ranks(n_calib, n_test, cfg.alpha, cfg.delta),
                                      abs=0.015)


def test_verdict_lines_and_doc_block(tmp_path):
    good = summarize([_draw(0.0, 0.0)] * 20, 0.01)
    held = {"device": "cygnus-medical-systems-helix-16", "ece": [0.015, 0.018]}
    lines = verdicts(good, held, alpha=0.01, delta=0.05, need_pos=299,
                     min_calib_pos={"acme-tomography-voxa-64": 315})
    text = "\n".join(lines)
    assert len(lines) == 7 and text.count("**missed**") == 0
    assert "ECE on the held-out device `cygnus` after temperature scaling 0.0165" in text
    assert "60.0 % overall (acme 60.0 %" in text
    bad = summarize([_draw(0.02, 0.02, review=0.3)] * 3 + [_draw(0.0, 0.0)], 0.01)
    lines = verdicts(bad, None, alpha=0.01, delta=0.05, need_pos=299,
                     min_calib_pos={"acme-tomography-voxa-64": 250})
    text = "\n".join(lines)
    assert "not measured" in text
    assert "test part > α in overall 75.0 %" in text
    assert text.count("**missed**") == 4  # test miss, pool miss, positives, review
    table = routing_table(good, "after", {"acme-tomography-voxa-64": 315})
    assert table.splitlines()[2].startswith("| all | 300 (150) | 315 | 100 % |")


def test_evaluate_draw_is_reproducible(ruleset):
    pool = simulated_pool(n_big=700, n_small=0)
    qc = np.zeros(pool.label.size, bool)
    a = evaluate_draw(pool, 3, ruleset=ruleset, train_devices=["big"], qc=qc)
    b = evaluate_draw(pool, 3, ruleset=ruleset, train_devices=["big"], qc=qc)
    assert json.dumps(a) == json.dumps(b)  # NaN-safe equality


@pytest.mark.parametrize("wrapped", [True, False])
def test_held_out_ece_reads_the_quality_results(tmp_path, wrapped):
    """The quality harness writes ``{"args", "holdouts", "seconds", "results"}`` (older
    runs: the bare list); only focal+dp's calibrated rows count."""
    from benchmarks.triage.run import held_out_ece

    def result(variant, ece):
        row = {"held_out_device": "cygnus", "held_out_ece": ece, "in_domain_ece": 0.01,
               "temperature": 0.5}
        return {"variant": variant, "rows": {"True": row, "False": {**row, "held_out_ece": 9}}}

    results = [result("focal+dp", 0.02), result("baseline", 0.5), result("focal+dp", 0.04)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"args": {}, "holdouts": ["cygnus"], "seconds": 1.0,
                                "results": results} if wrapped else results))
    got = held_out_ece(path)
    assert got["device"] == "cygnus" and got["ece"] == [0.02, 0.04]
    assert held_out_ece(tmp_path / "missing.json") is None
