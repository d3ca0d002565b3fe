"""Split-conformal thresholds: order statistics, and by simulation over calibration redraws,
E[miss rate] <= alpha and E[false-urgent rate] <= beta (docs/calibration.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta as beta_dist

from triage.route import ThresholdConfig, fit_thresholds
from triage.route.conformal import conformal_high, conformal_low, marginal_needed, marginal_rank

DRAWS = 2000


def test_rank_and_needed():
    assert [marginal_rank(n, 0.01) for n in (98, 99, 198, 199)] == [0, 1, 1, 2]
    assert marginal_needed(0.01) == 99 and marginal_needed(0.1) == 9
    assert marginal_needed(0.3) == 3  # 1/0.3 - 1 = 2.33


def test_low_is_the_kth_smallest_and_none_below_the_minimum():
    scores = np.array([0.9, 0.2, 0.5, 0.05, 0.7] * 40)  # n = 200: k = floor(0.01 * 201) = 2
    t, misses, bound = conformal_low(scores, 0.01)
    assert t == 0.05 and misses == 0 and bound == pytest.approx(2 / 201)
    assert conformal_low(scores[:98], 0.01) == (None, 0, 1.0)


def test_high_is_strictly_above_the_jth_smallest_negative():
    negatives = np.arange(1, 20) / 20  # m = 19, beta 0.05: j = 19, the largest
    t, bound = conformal_high(negatives, 0.05)
    assert 0.95 < t < 0.95 + 1e-12 and bound == pytest.approx(1 / 20)
    assert not (negatives >= t).any()  # ties at r_(j) are not urgent
    assert conformal_high(negatives[:18], 0.05) == (None, 1.0)


@pytest.mark.parametrize("n", [99, 150, 500])
def test_marginal_mean_miss_rate_is_at_most_alpha_over_redraws(n):
    # Positives' scores ~ Beta(5, 2): the true miss rate of t is the Beta(5, 2) CDF at t.
    rng = np.random.default_rng(n)
    thresholds = np.array([conformal_low(draw, 0.01)[0]
                           for draw in rng.beta(5, 2, size=(DRAWS, n))])
    rate = beta_dist.cdf(thresholds, 5, 2)
    se = rate.std(ddof=1) / np.sqrt(DRAWS)
    exact = marginal_rank(n, 0.01) / (n + 1)  # E[R] = k / (n + 1) for continuous scores
    assert rate.mean() <= 0.01 + 3 * se
    assert abs(rate.mean() - exact) <= 4 * se
    # no high-probability statement: a sizeable share of draws exceeds alpha
    assert (rate > 0.01).mean() > 0.15


@pytest.mark.parametrize("m", [19, 100])
def test_marginal_mean_false_urgent_rate_is_at_most_beta_over_redraws(m):
    rng = np.random.default_rng(m)
    thresholds = np.array([conformal_high(draw, 0.05)[0]
                           for draw in rng.beta(2, 5, size=(DRAWS, m))])
    rate = beta_dist.sf(thresholds, 2, 5)
    se = rate.std(ddof=1) / np.sqrt(DRAWS)
    assert rate.mean() <= 0.05 + 3 * se


def test_pac_exceedance_is_at_most_delta_over_redraws():
    # 400 positives: k* = 0, so P(R(t_low) > 0.01) = 0.99 ** 400 = 0.018 on a fine grid.
    rng = np.random.default_rng(7)
    cfg = ThresholdConfig(min_negatives=10**6)  # routine side only
    draws, n = 1000, 400
    rates = []
    for scores in rng.beta(5, 2, size=(draws, n)):
        group = fit_thresholds(scores, np.ones(n, int), np.full(n, "a"), cfg).get("a")
        rates.append(beta_dist.cdf(group.t_low, 5, 2))
    exceed = np.mean(np.array(rates) > 0.01)
    se = np.sqrt(0.05 * 0.95 / draws)
    assert exceed <= 0.05 + 2 * se
    assert exceed == pytest.approx(0.99 ** 400, abs=4 * np.sqrt(0.018 * 0.982 / draws))
