"""Threshold certification: exact Clopper–Pearson bounds, the finite-sample guarantee on
simulated calibrated data, Mondrian groups without enough data, round trips, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from triage.calibrate import CalibrationInputError
from triage.errors import ConfigError
from triage.route import (
    FittedThresholds,
    ThresholdConfig,
    cp_lower,
    cp_upper,
    fit_thresholds,
    min_positives_needed,
)
from triage.route.thresholds import candidate_thresholds

from .conftest import calibrated

REPEATS = 300


def test_clopper_pearson_matches_scipy_beta_and_hand_values():
    k, n = np.array([0, 1, 3, 10, 50, 50]), np.array([10, 10, 299, 400, 50, 60])
    np.testing.assert_allclose(cp_upper(k[:4], n[:4], 0.05),
                               beta.ppf(0.95, k[:4] + 1, n[:4] - k[:4]), rtol=1e-12)
    np.testing.assert_allclose(cp_lower(k[1:], n[1:], 0.05),
                               beta.ppf(0.05, k[1:], n[1:] - k[1:] + 1), rtol=1e-12)
    # zero events: 1 - delta**(1/n); all events: delta**(1/n); edges 1 and 0
    assert cp_upper(0, 299, 0.05) == pytest.approx(1 - 0.05 ** (1 / 299), rel=1e-12)
    assert cp_lower(30, 30, 0.05) == pytest.approx(0.05 ** (1 / 30), rel=1e-12)
    assert cp_upper(5, 5, 0.05) == 1.0 and cp_lower(0, 5, 0.05) == 0.0
    # the bound is where the binomial tail equals delta: P(Bin(n, u) <= k) = delta
    u = float(cp_upper(3, 299, 0.05))
    assert binom.cdf(3, 299, u) == pytest.approx(0.05, rel=1e-9)


def test_min_positives_needed_follows_from_the_bound():
    assert min_positives_needed(0.01, 0.05) == 299  # ln 0.05 / ln 0.99 = 298.07
    assert cp_upper(0, 298, 0.05) > 0.01 >= cp_upper(0, 299, 0.05)
    assert min_positives_needed(0.05, 0.05) == 59
    assert ThresholdConfig().required_positives == 299
    assert ThresholdConfig(min_positives=500).required_positives == 500


@pytest.mark.parametrize("delta", [0.01, 0.05, 0.1, 0.2])
@pytest.mark.parametrize("alpha", [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
def test_min_positives_needed_agrees_with_the_clopper_pearson_bound(alpha, delta):
    """The closed form (no scipy at a run's start-up) gives the fewest n whose bound with
    no miss, as `cp_upper` computes it, is at most alpha."""
    n = min_positives_needed(alpha, delta)
    assert cp_upper(0, n, delta) <= alpha < cp_upper(0, n - 1, delta)


def test_hand_example_single_group():
    # 400 positives spread evenly, 600 negatives far below: the routine scan may count at
    # most k misses with P(Bin(400, 0.01) <= k) <= 0.05, i.e. k = 0 (cdf(0) = 0.018,
    # cdf(1) = 0.090), so t_low is the last grid point at or below the lowest positive.
    pos = np.linspace(0.3, 0.99, 400)
    p = np.concatenate([pos, np.full(600, 0.01)])
    y = np.concatenate([np.ones(400, int), np.zeros(600, int)])
    g = fit_thresholds(p, y, ["a"] * 1000).get("a")
    grid = candidate_thresholds(2001)
    assert g.t_low == grid[grid <= 0.3].max() and g.miss_count == 0
    assert g.miss_bound == pytest.approx(1 - 0.05 ** (1 / 400))
    # every study above 0.01 is positive: the urgent scan goes down to just above the
    # negatives (so t_high < t_low here; the urgent rule is evaluated first)
    assert g.t_high == grid[grid > 0.01].min()
    assert g.urgent_positives == g.urgent_count == 400
    assert (g.n_pos, g.n_neg, g.low_reason, g.high_reason) == (400, 600, "", "")


def test_scans_stop_at_the_first_failure():
    # a dip of negatives at the top of the range: PPV fails there, and the descending scan
    # must not jump over the failure to the good region below
    rng = np.random.default_rng(1)
    p = np.concatenate([np.full(200, 0.97), rng.uniform(0.5, 0.9, 2000), np.full(300, 0.1)])
    y = np.concatenate([np.zeros(200, int), np.ones(2000, int), np.zeros(300, int)])
    g = fit_thresholds(p, y, ["a"] * p.size).get("a")
    assert g.t_high is None and "no urgent threshold for device a" in g.high_reason
    assert 0.5 < g.t_low < 0.51 and g.miss_count == 10 and g.miss_bound <= 0.01


def test_group_with_too_few_positives_gets_no_threshold(make_calibration):
    p, y, groups = make_calibration({"acme": 3000, "tiny": 200, "few-neg": 0}, seed=2)
    p = np.concatenate([p, np.full(400, 0.99)])
    y = np.concatenate([y, np.r_[np.ones(350, int), np.zeros(50, int)]])
    groups = np.concatenate([groups, np.full(400, "few-neg")])
    fitted = fit_thresholds(p, y, groups)
    tiny = fitted.get("tiny")
    assert tiny.t_low is None and tiny.t_high is None and not tiny.certified
    assert tiny.low_reason == (f"too few calibration positives for device tiny ({tiny.n_pos} "
                               f"< 299) to certify a threshold")
    few = fitted.get("few-neg")
    assert few.t_high is None and few.t_low is not None
    assert few.high_reason.startswith("too few calibration negatives for device few-neg "
                                      "(50 < 100)")
    assert fitted.get("acme").t_low is not None and fitted.get("acme").t_high is not None
    assert fitted.get("nowhere") is None
    # a minimum below what the math allows certifies nothing on the routine side
    low = fit_thresholds(*make_calibration({"a": 400}, seed=3),
                         ThresholdConfig(min_positives=100))
    if low.get("a").n_pos < 299:
        assert low.get("a").t_low is None and "keeps the miss rate" in low.get("a").low_reason


def _guarantee_draws(n_cal: int, repeats: int, seed: int):
    """Per draw: fitted t_low, t_high and the realized miss rate / PPV on a large test set."""
    rng = np.random.default_rng(seed)
    config = ThresholdConfig()
    rows = []
    for _ in range(repeats):
        g = fit_thresholds(*calibrated(n_cal, rng), ["a"] * n_cal, config).get("a")
        p_test, y_test = calibrated(200_000, rng)
        pos = p_test[y_test == 1]
        miss = float(np.mean(pos < g.t_low)) if g.t_low is not None else 0.0
        urgent = y_test[p_test >= g.t_high] if g.t_high is not None else np.ones(1)
        rows.append((g.t_low, g.t_high, miss, float(urgent.mean())))
    return rows


def test_miss_rate_and_ppv_guarantees_hold_over_repeated_calibration_draws():
    # 300 fresh calibration sets of 3000 studies (~1500 positives) and test sets of 200k
    cfg = ThresholdConfig()
    draws = np.array(_guarantee_draws(3000, REPEATS, seed=11), dtype=float)
    t_low, t_high, miss, ppv = draws.T
    slack = binom.ppf(0.999, REPEATS, cfg.delta)  # exceedances if the true rate were delta
    assert not np.isnan(t_low).any() and np.isnan(t_high).mean() < 0.05
    # the true miss rate at t is t**2 and the true PPV (1 + t) / 2 for these scores;
    # an uncertified urgent side (NaN) routes nothing urgent and cannot fall short
    assert np.sum(t_low ** 2 > cfg.alpha) <= slack
    assert np.sum((1 + t_high) / 2 < cfg.ppv_target) <= slack
    assert np.sum(miss > cfg.alpha) <= slack
    assert np.sum(ppv < cfg.ppv_target) <= slack
    # not vacuous: the thresholds are useful, close to the oracle t* = 0.1 and 0.8
    assert 0.06 < np.median(t_low) < 0.1 and 0.8 < np.nanmedian(t_high) < 0.9


def test_more_calibration_data_gives_thresholds_no_worse_on_average():
    def coverage(n_cal, seed):
        # fraction of studies routed routine (t_low) and urgent (1 - t_high; 0 uncertified)
        draws = np.array(_guarantee_draws(n_cal, 60, seed=seed), dtype=float)
        return draws[:, 0].mean(), np.nan_to_num(1 - draws[:, 1], nan=0.0).mean()

    small, medium, large = coverage(800, 5), coverage(2000, 6), coverage(6000, 7)
    assert small[0] < medium[0] < large[0] < 0.1
    assert small[1] < medium[1] < large[1] < 0.2


def test_to_dict_from_dict_round_trip(fitted):
    import json

    data = json.loads(json.dumps(fitted.to_dict()))
    assert FittedThresholds.from_dict(data) == fitted
    assert data["format"] == 2 and sorted(data["groups"]) == ["acme", "tiny"]
    with pytest.raises(ConfigError, match="not a thresholds record of format 1 or 2"):
        FittedThresholds.from_dict({"format": 9})
    data["groups"]["acme"]["t_lo"] = 0.1
    with pytest.raises(ConfigError, match="Unknown group field 't_lo'.*Did you mean 't_low'"):
        FittedThresholds.from_dict(data)


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="thresholds.alpha must be a number strictly between 0 "
                                         "and 1, got 1.5"):
        ThresholdConfig(alpha=1.5)
    with pytest.raises(ValueError, match="thresholds.min_negatives must be an integer >= 0"):
        ThresholdConfig(min_negatives=-1)
    with pytest.raises(ConfigError, match="Unknown thresholds option 'aplha'.*Did you mean "
                                          "'alpha'"):
        ThresholdConfig.from_dict({"aplha": 0.01})
    with pytest.raises(CalibrationInputError, match="'p' and 'groups' must have the same "
                                                    "length; got 2 probabilities and 1 groups"):
        fit_thresholds([0.1, 0.2], [0, 1], ["a"])
    with pytest.raises(CalibrationInputError, match="probabilities in \\[0, 1\\]"):
        fit_thresholds([0.1, 2.0], [0, 1], ["a", "a"])
    assert math.isclose(candidate_thresholds(3)[1], 0.5)
