"""Focal loss and cross-entropy on two-class logits, and the class weights."""

from __future__ import annotations

import math

import pytest
import torch

from triage.errors import ConfigError
from triage.train.config import LossConfig
from triage.train.losses import class_weights, create_loss, effective_class_counts

LOGITS = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5], [0.0, 0.0]])
TARGETS = torch.tensor([0, 1, 1, 0])


def focal_by_hand(logits, targets, gamma, weights):
    """sum_i w[y_i] (1 - p_i)^gamma (-log p_i) / sum_i w[y_i], p_i the softmax of y_i."""
    num = den = 0.0
    for row, y in zip(logits.tolist(), targets.tolist(), strict=True):
        z = [math.exp(v) for v in row]
        p = z[y] / sum(z)
        num += weights[y] * (1 - p) ** gamma * -math.log(p)
        den += weights[y]
    return num / den


def test_prevalence_weights_are_inverse_frequency_summing_to_one():
    assert class_weights([30, 10], "prevalence") == pytest.approx((0.25, 0.75))
    assert class_weights([5, 5], "prevalence") == pytest.approx((0.5, 0.5))
    assert class_weights([90, 10], "prevalence") == pytest.approx((0.1, 0.9))


def test_none_and_explicit_weights():
    assert class_weights([30, 10], "none") == (0.5, 0.5)
    assert class_weights([30, 10], (1.0, 3.0)) == (1.0, 3.0)


def test_prevalence_needs_both_classes():
    with pytest.raises(ConfigError, match=r"needs both classes.*\(12, 0\)"):
        class_weights([12, 0], "prevalence")


def test_class_aware_sampling_balances_the_counts_the_loss_sees():
    assert effective_class_counts([30, 10], class_aware=True) == (20, 20)
    assert effective_class_counts([30, 10], class_aware=False) == (30, 10)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", ["none", (0.2, 0.8)])
def test_focal_matches_the_formula(gamma, alpha):
    loss = create_loss(LossConfig("focal", gamma, alpha), [30, 10])
    weights = class_weights([30, 10], alpha)
    assert float(loss(LOGITS, TARGETS)) == pytest.approx(
        focal_by_hand(LOGITS, TARGETS, gamma, weights), rel=1e-6)


def test_focal_with_gamma_zero_is_weighted_cross_entropy():
    focal = create_loss(LossConfig("focal", 0.0, "prevalence"), [30, 10])
    ce = create_loss(LossConfig("ce", 0.0, "prevalence"), [30, 10])
    expected = torch.nn.functional.cross_entropy(LOGITS, TARGETS,
                                                 weight=torch.tensor([0.25, 0.75]))
    assert torch.allclose(focal(LOGITS, TARGETS), expected, atol=1e-6)
    assert torch.allclose(ce(LOGITS, TARGETS), expected, atol=1e-6)


def test_ce_without_alpha_is_plain_cross_entropy():
    ce = create_loss(LossConfig("ce", 2.0, "none"), [30, 10])
    assert torch.allclose(ce(LOGITS, TARGETS),
                          torch.nn.functional.cross_entropy(LOGITS, TARGETS))


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[4.0, -4.0]])
    hard = torch.tensor([[0.2, 0.0]])
    target = torch.tensor([0])
    ratio = {}
    for gamma in (0.0, 2.0):
        loss = create_loss(LossConfig("focal", gamma, "none"), [1, 1])
        ratio[gamma] = float(loss(hard, target) / loss(easy, target))
    assert ratio[2.0] > 10 * ratio[0.0]


def test_losses_backpropagate():
    for name in ("focal", "ce"):
        logits = LOGITS.clone().requires_grad_(True)
        create_loss(LossConfig(name), [3, 1])(logits, TARGETS).backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
