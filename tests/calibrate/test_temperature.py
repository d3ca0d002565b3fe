"""Temperature scaling: recovers a known T, lowers NLL, keeps the ranking, rejects bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.special import softmax

from triage.calibrate import (
    CalibrationInputError,
    accuracy,
    apply_temperature,
    auroc,
    fit_temperature,
    nll,
    probabilities,
    temperature_nll,
)
from triage.calibrate.temperature import T_MAX, T_MIN


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5, 6.0])
def test_recovers_known_temperature(make_logits, t_true):
    logits, y = make_logits(5000, t_true, seed=0)
    assert fit_temperature(logits, y) == pytest.approx(t_true, rel=0.05)


def test_fit_is_a_minimum_and_deterministic(make_logits):
    logits, y = make_logits(2000, 2.0, seed=1)
    t = fit_temperature(logits, y)
    assert fit_temperature(logits, y) == t
    best = temperature_nll(logits, y, t)
    assert best <= temperature_nll(logits, y, t * 1.01)
    assert best <= temperature_nll(logits, y, t / 1.01)


def test_scaling_lowers_nll_and_keeps_ranking(make_logits):
    logits, y = make_logits(3000, 3.0, seed=2)  # over-confident logits
    t = fit_temperature(logits, y)
    before, after = probabilities(logits), probabilities(logits, t)
    assert nll(after, y) <= nll(before, y)
    assert nll(after, y) == pytest.approx(temperature_nll(logits, y, t), abs=1e-9)
    assert accuracy(after, y) == accuracy(before, y)
    assert auroc(after, y) == pytest.approx(auroc(before, y), abs=1e-12)


def test_probabilities_equal_softmax_and_survive_huge_logits():
    logits = np.array([[0.3, -1.2], [2.0, 2.0], [-4.0, 5.0]])
    np.testing.assert_allclose(probabilities(logits, 1.7), softmax(logits / 1.7, axis=1)[:, 1])
    with np.errstate(all="raise"):
        p = probabilities(np.array([[0.0, 1e6], [1e6, -1e6], [1e308, 0.0]]))
    np.testing.assert_array_equal(p, [1.0, 0.0, 0.0])


def test_apply_temperature_divides():
    logits = np.array([[1.0, -2.0], [4.0, 0.5]])
    np.testing.assert_allclose(apply_temperature(logits, 2.0), logits / 2.0)
    assert apply_temperature(logits, 2.0).dtype == np.float64


def test_accepts_torch_tensors(make_logits):
    torch = pytest.importorskip("torch")
    logits, y = make_logits(500, 1.5, seed=3)
    tensor = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    assert fit_temperature(tensor, torch.tensor(y)) == pytest.approx(
        fit_temperature(logits.astype(np.float32), y), rel=1e-6)
    assert probabilities(tensor).shape == (500,)


def test_separable_data_hits_the_lower_bound(caplog):
    margin = np.r_[np.linspace(1, 10, 50), -np.linspace(1, 10, 50)]
    logits = np.stack([np.zeros_like(margin), margin], axis=1)
    y = (margin > 0).astype(int)
    with caplog.at_level(logging.WARNING, logger="triage.calibrate.temperature"):
        t = fit_temperature(logits, y)
    assert t == pytest.approx(T_MIN)
    assert "at its bound" in caplog.text


def test_reversed_labels_hit_the_upper_bound(make_logits):
    logits, y = make_logits(500, 1.0, seed=4)
    assert fit_temperature(logits, 1 - y) == pytest.approx(T_MAX)


def test_huge_logits_give_a_finite_temperature(caplog):
    margin = np.r_[np.full(45, 1e6), np.full(5, -1e6)]  # 10 % confidently wrong
    logits = np.stack([np.zeros_like(margin), margin], axis=1)
    with np.errstate(over="raise"):
        assert fit_temperature(logits, np.ones(50)) == pytest.approx(T_MAX)
        # All right and overwhelmingly sure: the NLL is 0 at every T; T = 1 is kept.
        with caplog.at_level(logging.WARNING, logger="triage.calibrate.temperature"):
            assert fit_temperature(logits[:45], np.ones(45)) == 1.0
    assert "same at every temperature" in caplog.text


@pytest.mark.parametrize(("logits", "labels", "match"), [
    (np.zeros((3, 3)), [0, 1, 0], r"shape \(N, 2\) \(two-class logits\); got shape \(3, 3\)"),
    (np.zeros(3), [0, 1, 0], r"got shape \(3,\)"),
    (np.zeros((0, 2)), [], "'logits' is empty"),
    ([[0.0, np.nan], [1.0, 0.0]], [0, 1], r"finite; 1 row\(s\) hold NaN or infinity, the first "
                                          "at index 0"),
    (np.zeros((3, 2)), [0, 1], "same number of samples; got 3 rows of logits and 2 labels"),
    (np.zeros((2, 2)), [0, 5], "only 0 \\(negative\\) and 1"),
])
def test_fit_rejects_bad_input(logits, labels, match):
    with pytest.raises(CalibrationInputError, match=match):
        fit_temperature(logits, labels)


@pytest.mark.parametrize("t", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_temperature(t):
    with pytest.raises(CalibrationInputError, match="'T' \\(temperature\\) must be a finite"):
        probabilities(np.zeros((2, 2)), t)
    with pytest.raises(CalibrationInputError):
        apply_temperature(np.zeros((2, 2)), t)
