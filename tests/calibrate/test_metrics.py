"""Metrics against scikit-learn and hand arithmetic, reports, bootstrap intervals, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    recall_score,
    roc_auc_score,
)

from triage.calibrate import (
    METRIC_KEYS,
    CalibrationInputError,
    accuracy,
    adaptive_ece,
    auroc,
    binary_report,
    bootstrap_ci,
    brier,
    ece,
    grouped_report,
    macro_f1,
    nll,
    reliability_bins,
    risk_coverage,
    sensitivity,
    specificity,
)

# Hand example, 5 bins with edges 0, .2, .4, .6, .8, 1 (bins are (lo, hi]).
HAND_P = np.array([0.95, 0.85, 0.7, 0.3, 0.1])
HAND_Y = np.array([1, 0, 1, 1, 0])


# ---- agreement with scikit-learn -----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_metrics_match_sklearn(make_predictions, seed, threshold):
    p, y = make_predictions(400, seed=seed, sharpen=1.7)
    pred = (p >= threshold).astype(int)
    assert auroc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert brier(p, y) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert nll(p, y) == pytest.approx(log_loss(y, p), abs=1e-12)
    assert macro_f1(p, y, threshold) == pytest.approx(f1_score(y, pred, average="macro"))
    assert accuracy(p, y, threshold) == pytest.approx(accuracy_score(y, pred))
    assert sensitivity(p, y, threshold) == pytest.approx(recall_score(y, pred))
    assert specificity(p, y, threshold) == pytest.approx(recall_score(y, pred, pos_label=0))


def test_report_auroc_handles_ties_like_sklearn(make_predictions):
    p, y = make_predictions(300, seed=4)
    p = np.round(p, 1)  # many ties
    assert binary_report(p, y)["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_macro_f1_single_class_matches_sklearn():
    y = np.ones(6, dtype=int)
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    expected = f1_score(y, (p >= 0.5).astype(int), average="macro", zero_division=0)
    assert macro_f1(p, y) == pytest.approx(expected)
    assert macro_f1(np.full(4, 0.9), np.ones(4)) == 1.0  # only class 1, all right


# ---- ECE --------------------------------------------------------------------------------------


def test_ece_top_label_by_hand():
    # confidence max(p, 1-p) = .95 .85 .7 .7 .9; prediction p >= .5 = 1 1 1 0 0;
    # correct = 1 0 1 0 1.
    # bin (.8, 1]: .95 .85 .9 -> n=3, conf .9, acc 2/3: 3/5 * |2/3 - .9| = .14
    # bin (.6, .8]: .7 .7     -> n=2, conf .7, acc 1/2: 2/5 * |.5 - .7|   = .08
    assert ece(HAND_P, HAND_Y, n_bins=5) == pytest.approx(0.22)


def test_ece_per_class_by_hand():
    # class1: p against y.
    # (.8, 1]: .95 .85 -> mean .9, fraction positive .5: 2/5 * .4 = .16
    # (.6, .8]: .7     -> .7 vs 1: 1/5 * .3 = .06
    # (.2, .4]: .3     -> .3 vs 1: 1/5 * .7 = .14
    # (0, .2]: .1      -> .1 vs 0: 1/5 * .1 = .02            total .38
    assert ece(HAND_P, HAND_Y, n_bins=5, kind="class1") == pytest.approx(0.38)
    # class0: 1 - p = .05 .15 .3 .7 .9 against 1 - y = 0 1 0 0 1: the mirror image.
    assert ece(HAND_P, HAND_Y, n_bins=5, kind="class0") == pytest.approx(0.38)


def test_adaptive_ece_by_hand():
    # One sample per bin: mean |correct - conf| = (.05 + .85 + .3 + .7 + .1) / 5 = .4
    assert adaptive_ece(HAND_P, HAND_Y, n_bins=5) == pytest.approx(0.4)
    # Two equal-count bins over conf sorted .7 .7 | .85 .9 .95 with correct 1 0 | 0 1 1:
    # (|1 - 1.4| + |2 - 2.7|) / 5 = .22
    assert adaptive_ece(HAND_P, HAND_Y, n_bins=2) == pytest.approx(0.22)
    # More bins than samples: every sample its own bin.
    assert adaptive_ece(HAND_P, HAND_Y, n_bins=50) == pytest.approx(0.4)


def test_ece_small_when_perfectly_calibrated(make_predictions):
    p, y = make_predictions(200_000, seed=1)
    assert ece(p, y) < 0.005
    assert ece(p, y, kind="class1") < 0.005
    assert adaptive_ece(p, y) < 0.005


def test_ece_measures_a_known_miscalibration():
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=100_000) < 0.6).astype(int)
    p = np.full(y.size, 0.8)  # says 80 %, right 60 % of the time
    assert ece(p, y) == pytest.approx(0.2, abs=0.01)
    assert ece(p, y, kind="class1") == pytest.approx(0.2, abs=0.01)
    assert adaptive_ece(p, y) == pytest.approx(0.2, abs=0.01)


def test_over_confidence_raises_ece(make_predictions):
    p, y = make_predictions(20_000, seed=3, sharpen=3.0)
    assert ece(p, y) > 0.1
    assert ece(p, y) > 10 * ece(*make_predictions(20_000, seed=3))


def test_ece_bins_are_right_closed():
    # .6 lies on an edge of 5 bins: it belongs to (.4, .6], whose mean confidence is .6.
    assert ece([0.6], [1], n_bins=5, kind="class1") == pytest.approx(0.4)
    bins = reliability_bins([0.0, 0.6, 1.0], [0, 1, 1], n_bins=5, kind="class1")
    assert bins["count"].tolist() == [1, 0, 1, 0, 1]


def test_reliability_bins_reproduce_ece(make_predictions):
    p, y = make_predictions(1000, seed=5, sharpen=2.0)
    bins = reliability_bins(p, y, n_bins=10)
    assert bins["count"].sum() == p.size
    filled = bins[bins["count"] > 0]
    gap = (filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / p.size
    assert gap == pytest.approx(ece(p, y, n_bins=10))
    assert bins.loc[bins["count"] == 0, "accuracy"].isna().all()


# ---- edge cases and bad input ---------------------------------------------------------------


def test_single_class_gives_nan_without_warning():
    p, y = np.array([0.2, 0.7, 0.9]), np.ones(3, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(auroc(p, y))
        assert np.isnan(specificity(p, y))
        report = binary_report(p, y)
    assert np.isnan(report["auroc"]) and np.isnan(report["specificity"])
    assert report["sensitivity"] == pytest.approx(2 / 3)
    assert np.isnan(sensitivity(p, np.zeros(3)))


def test_extreme_probabilities_keep_nll_finite():
    assert np.isfinite(nll([0.0, 1.0], [1, 0]))
    assert nll([0.0, 1.0], [0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_accepts_bool_labels_lists_and_tensors():
    torch = pytest.importorskip("torch")
    p = [0.1, 0.8, 0.6]
    expected = brier(p, [0, 1, 0])
    assert brier(p, [False, True, False]) == expected
    assert brier(torch.tensor(p, requires_grad=True), torch.tensor([0, 1, 0])) == \
        pytest.approx(expected)


@pytest.mark.parametrize(("p", "y", "match"), [
    ([], [], "'p_pos' is empty"),
    ([0.5, 0.5], [1], "same length; got 2 probabilities and 1 labels"),
    ([0.5, 1.2], [0, 1], r"in \[0, 1\], but 1 value\(s\) are not; the first is 1.2 at index 1"),
    ([0.5, np.nan], [0, 1], r"probabilities in \[0, 1\]"),
    ([0.5, 0.4], [0, 2], r"and 1 \(positive\), but 1 value\(s\) are not; the first is 2 at "
                         "index 1"),
    ([[0.5, 0.5]], [0], r"must be 1-D .* got shape \(1, 2\) \(pass the positive-class"),
    ([0.5], ["a"], "must hold the numbers 0 and 1"),
])
def test_bad_input_is_named(p, y, match):
    with pytest.raises(CalibrationInputError, match=match):
        binary_report(p, y)


def test_bad_options_are_named():
    with pytest.raises(CalibrationInputError, match="'n_bins' must be an integer >= 1; got 0"):
        ece([0.5], [1], n_bins=0)
    with pytest.raises(CalibrationInputError, match="'kind' must be one of top-label"):
        ece([0.5], [1], kind="class2")
    with pytest.raises(CalibrationInputError, match="'threshold' must be a probability"):
        accuracy([0.5], [1], threshold=1.5)
    with pytest.raises(ValueError):  # CalibrationInputError is a ValueError
        nll([0.5], [3])


# ---- reports ----------------------------------------------------------------------------------


def test_binary_report_keys_and_values(make_predictions):
    p, y = make_predictions(500, seed=6, sharpen=1.5)
    report = binary_report(p, y, threshold=0.4, n_bins=10)
    assert tuple(report) == METRIC_KEYS
    assert report["n"] == 500.0
    assert report["prevalence"] == pytest.approx(y.mean())
    assert report["accuracy"] == pytest.approx(accuracy(p, y, 0.4))
    assert report["auroc"] == pytest.approx(auroc(p, y))
    assert report["ece"] == pytest.approx(ece(p, y, 10))
    assert report["ece_class0"] == pytest.approx(ece(p, y, 10, kind="class0"))
    assert report["adaptive_ece"] == pytest.approx(adaptive_ece(p, y, 10))
    assert all(isinstance(v, float) for v in report.values())


def test_grouped_report_rows_and_columns(make_predictions):
    p, y = make_predictions(300, seed=7)
    groups = np.array([10, 2, 3] * 100)
    y[groups == 3] = 1  # one group with a single class
    df = grouped_report(p, y, groups)
    assert list(df.columns) == ["group", *METRIC_KEYS]
    assert df["group"].tolist() == ["all", "2", "3", "10"]  # numeric order, as text
    assert df["n"].tolist() == [300, 100, 100, 100]
    assert np.isnan(df.loc[df["group"] == "3", "auroc"].item())
    assert df.iloc[0]["brier"] == pytest.approx(brier(p, y))
    mask = groups == 2
    assert df.iloc[1]["ece"] == pytest.approx(ece(p[mask], y[mask]))


def test_grouped_report_accepts_series_and_mixed_types(make_predictions):
    p, y = make_predictions(6, seed=8)
    df = grouped_report(p, y, pd.Series(["b", "a", 1, "b", "a", 1], dtype=object))
    assert df["group"].tolist() == ["all", "1", "a", "b"]


@pytest.mark.parametrize(("groups", "match"), [
    (["a", None, "b", "a"], "1 missing value\\(s\\), the first at index 1"),
    (["all", "a", "a", "a"], "group named 'all'"),
    (["a", "b"], r"one group per sample \(4\); got shape \(2,\)"),
])
def test_grouped_report_bad_groups(groups, match):
    with pytest.raises(CalibrationInputError, match=match):
        grouped_report([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], np.array(groups, dtype=object))


# ---- risk-coverage -----------------------------------------------------------------------------


def test_risk_coverage_orders_by_confidence_and_groups_ties():
    p = np.array([0.99, 0.02, 0.6, 0.4, 0.6])
    y = np.array([1, 0, 0, 1, 1])
    coverage, risk = risk_coverage(p, y)
    # conf .99 .98 | .6 .6 .6 (tied: kept together); errors among the tied three: 2
    np.testing.assert_allclose(coverage, [0.2, 0.4, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.0, 0.4])
    assert risk[-1] == pytest.approx(1 - accuracy(p, y))


# ---- bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_estimate(make_predictions):
    p, y = make_predictions(800, seed=9, sharpen=1.5)
    low, high = bootstrap_ci("ece", p, y, n_boot=300, seed=3)
    assert (low, high) == bootstrap_ci("ece", p, y, n_boot=300, seed=3)
    assert (low, high) != bootstrap_ci("ece", p, y, n_boot=300, seed=4)
    assert low < high
    a_low, a_high = bootstrap_ci("auroc", p, y, n_boot=300)
    assert a_low < auroc(p, y) < a_high


def test_bootstrap_named_and_callable_paths_agree(make_predictions):
    # Same seed, same resamples: the vectorized kernels equal one call per resample.
    p, y = make_predictions(200, seed=10, sharpen=2.0)
    for name, fn in [("ece", ece), ("adaptive_ece", adaptive_ece), ("auroc", auroc),
                     ("macro_f1", macro_f1), ("nll", nll), ("specificity", specificity)]:
        expected = bootstrap_ci(lambda a, b, fn=fn: fn(a, b), p, y, n_boot=50)
        np.testing.assert_allclose(bootstrap_ci(name, p, y, n_boot=50), expected, rtol=1e-12)
        np.testing.assert_allclose(bootstrap_ci(fn, p, y, n_boot=50), expected, rtol=1e-12)


def test_bootstrap_narrows_with_more_data(make_predictions):
    small = bootstrap_ci("brier", *make_predictions(100, seed=11), n_boot=300)
    large = bootstrap_ci("brier", *make_predictions(10_000, seed=11), n_boot=300)
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_bootstrap_skips_nan_resamples():
    p, y = np.array([0.2, 0.8, 0.4]), np.array([0, 1, 1])
    low, high = bootstrap_ci("auroc", p, y, n_boot=200)  # some resamples hold one class
    assert 0 <= low <= high <= 1
    assert all(np.isnan(bootstrap_ci("auroc", p, np.ones(3), n_boot=20)))


def test_bootstrap_bad_arguments():
    p, y = [0.2, 0.8], [0, 1]
    with pytest.raises(CalibrationInputError, match="Unknown metric 'ecee' for bootstrap_ci"):
        bootstrap_ci("ecee", p, y)
    with pytest.raises(CalibrationInputError, match="'n_boot' must be an integer >= 1"):
        bootstrap_ci("ece", p, y, n_boot=0)
    with pytest.raises(CalibrationInputError, match="'alpha' must be in \\(0, 1\\)"):
        bootstrap_ci("ece", p, y, alpha=1.0)
    with pytest.raises(TypeError, match="metric name or a callable"):
        bootstrap_ci(3, p, y)
